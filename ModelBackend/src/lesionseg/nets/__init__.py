"""Network architectures (dimension-generic) and the name -> class table model cards refer to.

Method-specific networks live with their method and either call :func:`register_network` or are named in
the card by dotted path (``lesionseg.methods.<method>.network.<Class>``).
"""
from .unet import NETWORKS, UNet, build_network, register_network

__all__ = ["NETWORKS", "UNet", "build_network", "register_network"]
