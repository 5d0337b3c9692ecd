"""``lesionseg serve``: the backend's methods behind a versioned HTTP API, for Slicer panels on machines without a GPU.

The API (JSON unless said otherwise; every route needs ``Authorization: Bearer <token>`` when the server has one):

* ``GET /v1/health`` -- ``{"status": "ok", "sessions", "queued"}``.
* ``GET /v1/info`` -- server and API version, device, limits, and each registered method: prompt kind, inputs,
  options (:meth:`lesionseg.options.Settings.describe`), whether its weights are found.
* ``POST /v1/sessions`` (multipart/form-data) -- parts ``image`` (one per input, in the method's order: NIfTI,
  NRRD or MHA bytes, or a zip of one DICOM series), optional fields ``method``, ``options`` (JSON), ``series``
  (a DICOM SeriesInstanceUID), ``meta`` (JSON list, one dict per image), ``prepared`` (``1``: the images are what
  ``set_image`` takes, as a :class:`lesionseg.client.RemoteSegmenter` sends them; else a method's own reader
  reads them, e.g. a PET into SUV) -> 201 ``{"session", "images": [geometry...], "timings"}``. With ``method``,
  its ``set_image`` runs before the answer.
* ``GET /v1/sessions/{id}``, ``DELETE /v1/sessions/{id}``.
* ``POST /v1/sessions/{id}/predict`` -- ``{"method", "prompt": Box/RecistLine ``to_dict()`` or null, "options",
  "files": {option: {"name", "data": base64}}}`` -> the label as NIfTI bytes on the session's grid; headers
  ``X-LesionSeg-Timings`` and ``X-LesionSeg-Warnings`` (JSON).
* ``POST /v1/sessions/{id}/refine`` -- ``{"mask": {"shape", "packbits": base64}, "fg", "bg": [[x, y, z]...],
  "settings"}`` (the settings of ``lesionseg refine``) -> the refined label as NIfTI bytes.

Errors are JSON ``{"error": message, "type", "code"}``: a :class:`~lesionseg.errors.LesionSegError` gets a 4xx
status and the message the CLI prints for the same input (400 bad input, 401 bad token, 404 unknown session or
method, 409 wrong number of images, 413 upload too large); 503 when the queue is full; anything else 500 with an
id that the server log repeats. Nothing here imports fastapi: :mod:`lesionseg.server.app` does.
"""
from __future__ import annotations

API_VERSION = "1.0"
"""``major.minor``: a client speaks to a server of the same major version whose minor version is at least its own."""

API_PREFIX = "/v1"

DEFAULT_PORT = 8765
