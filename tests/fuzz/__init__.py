"""The fuzz targets and the atheris runner; see fuzz.py."""
