"""Infrastructure every layer uses: it knows no stage's domain and imports no other layer.

The base of typed records and where outputs live (``paths:``; each stage's params section
belongs to its own layer), user-facing errors, atomic artifacts and ``meta.json``, the
bounded parallel map, progress bars, the distributed rank, and MLflow tracking of stage runs.
"""
