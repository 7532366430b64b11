"""Grading one submission: intake (folder, zip, notebook), executors, the pytest plugin, the runner."""
