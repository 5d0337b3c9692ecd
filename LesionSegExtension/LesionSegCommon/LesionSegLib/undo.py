"""Undo stack of LesionSeg results (pure Python).

Why not Slicer's own undo mechanisms:

* MRML scene undo (``vtkMRMLScene.SaveStateForUndo`` on nodes with ``UndoEnabledOn``) only records when the
  scene-wide undo flag is on (``SetUndoOn``; off by default in Slicer, and turning it on changes every other
  module's behaviour), snapshots a deep copy of the whole segmentation node per step, and Slicer binds no
  Ctrl+Z to it.
* The Segment Editor's ``saveStateForUndo`` belongs to the editor widget (or to an effect's
  ``scriptedEffect``), keeps history only for the segmentation that widget shows, and is cleared when the
  editor switches segmentation.

A LesionSeg step only *adds* a segment (or a segmentation node holding it), so its exact inverse is to
remove what was added: O(1) memory, no effect on anything else in the scene. Each step pushes that inverse
here; the panels bind Ctrl+Z (and an Undo button) to :meth:`UndoStack.undo` while they are shown.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UndoStep:
    """One undoable step: a description for the status line and the callable that reverts it."""

    description: str
    revert: Callable[[], None]


class UndoStack:
    """Last-in first-out steps, at most ``limit`` kept (the oldest are forgotten)."""

    def __init__(self, limit: int = 20) -> None:
        if limit < 1:
            raise ValueError("the undo limit must be at least 1")
        self._limit = limit
        self._steps: list[UndoStep] = []

    def push(self, description: str, revert: Callable[[], None]) -> None:
        """Record a step that ``revert()`` undoes."""
        self._steps.append(UndoStep(description, revert))
        del self._steps[:-self._limit]

    def undo(self) -> Optional[str]:
        """Revert the latest step; returns its description, or ``None`` when there is nothing to undo.

        A step whose revert raises is dropped (its nodes were probably deleted by the user) and the error
        is re-raised.
        """
        if not self._steps:
            return None
        step = self._steps.pop()
        step.revert()
        logger.info("undone: %s", step.description)
        return step.description

    def clear(self) -> None:
        """Forget every step (e.g. when the scene is closed)."""
        self._steps.clear()

    def __len__(self) -> int:
        return len(self._steps)

    @property
    def next_description(self) -> Optional[str]:
        """What :meth:`undo` would revert, or ``None``."""
        return self._steps[-1].description if self._steps else None
