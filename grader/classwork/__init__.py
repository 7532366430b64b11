"""Grading a class: rosters and LMS bulk downloads, the resumable parallel batch."""
