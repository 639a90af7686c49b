"""Infrastructure every layer uses: it knows no stage's domain and imports no other layer.

Typed configuration (one pydantic section per params.yaml section, and where outputs live),
user-facing errors, atomic artifacts and ``meta.json``, the bounded parallel map, progress
bars, the distributed rank, and MLflow tracking of stage runs.
"""
