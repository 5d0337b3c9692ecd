"""The "Lesion GrabCut/CRF" Segment Editor effect (:mod:`.SegmentEditorEffect`, needs Slicer) and its pure
computation (:mod:`.refine`, tested offline)."""
