"""Pure functions over detections: no I/O, no drawing."""
