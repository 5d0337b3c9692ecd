"""Slicer-side helpers shared by every LesionSeg module (shipped by the hidden module ``LesionSegCommon``).

Submodules, each small and importable on its own:

* :mod:`LesionSegLib.scene` -- Slicer RAS geometry <-> backend LPS geometry (pure numpy; the only RAS->LPS place).
* :mod:`LesionSegLib.results` -- what a result looks like in a segmentation: names, colours, terminology,
  prompt tags, the changed region (pure numpy).
* :mod:`LesionSegLib.session` -- keeps a built segmenter and its ``set_image`` between clicks.
* :mod:`LesionSegLib.interactive` -- the one worker thread of interactive clicks, its tasks (progress, Cancel that
  returns at once), the session's warm models (one per method, weights and device), the logic mixin (pure Python).
* :mod:`LesionSegLib.interactive_ui` -- a task in a panel (status line, the run button cancels) and the panel mixin.
* :mod:`LesionSegLib.refine` -- what the "Lesion GrabCut/CRF" effect computes (pure; backend imported lazily).
* :mod:`LesionSegLib.undo` -- the undo stack of LesionSeg results (pure Python).
* :mod:`LesionSegLib.device` -- the auto/cpu/cuda choice of the panels (pure Python).
* :mod:`LesionSegLib.remote` -- "Run on": this computer or a LesionSeg server (pure Python); where each kind of
  run goes in server mode.
* :mod:`LesionSegLib.remote_ui` -- the "Run on" section of every panel and of the refine effect (Test connection).
* :mod:`LesionSegLib.process` -- background runner of the backend command line with progress and Cancel.
* :mod:`LesionSegLib.background_ui` -- drives a progress bar, status line and Cancel button from that runner;
  the start / finish / jump-to part of a whole-volume panel (a mixin).
* :mod:`LesionSegLib.jobs` -- one background job at a time in a panel logic: finish, cancel, jump-to, the run's folder.
* :mod:`LesionSegLib.steps` -- several backend commands as one background run (one progress bar, one Cancel).
* :mod:`LesionSegLib.wholevolume` -- a whole-volume run: options, inputs -> temporary folder -> backend
  (:class:`~LesionSegLib.wholevolume.Job`), and a lesion run's label + table -> segments and a table node.
* :mod:`LesionSegLib.lesiontable` -- the backend's one lesion table as panel rows (mL; SUV fields when present),
  cells, table-node columns, summaries and segment specs.
* :mod:`LesionSegLib.labelmaps` -- export volumes, read back label files, replace only a panel's own segments.
* :mod:`LesionSegLib.dependencies` -- which Python packages are missing or outdated; installs them only when asked.
* :mod:`LesionSegLib.installer` -- pip in a child process with a progress dialog and Cancel; the backend from a copy.
* :mod:`LesionSegLib.nodes` -- MRML nodes <-> backend images and prompts (needs Slicer).
* :mod:`LesionSegLib.panel` -- the parameter-node / scene-close lifecycle every panel widget shares (a mixin), and
  installing packages from a panel.
* :mod:`LesionSegLib.selftests`, :mod:`LesionSegLib.selftests_hidden` -- the in-Slicer self-test scenarios.

Nothing is imported here: ``scene``, ``results``, ``nodes`` and ``session`` import the backend (``lesionseg``),
which may not be installed before :func:`LesionSegLib.dependencies.ensure_installed` has run; the modules a panel
imports when it is shown (``dependencies``, ``device``, ``interactive``, ``refine``, ``panel``, ...) import neither
the backend nor torch.
"""
