"""Fuzz targets (atheris, ``make fuzz``) and the invariant checks that ``make test`` replays without atheris."""
