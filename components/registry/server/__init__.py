"""The wikilm MLflow server app: promotion rules kept by the tracking server itself.

``mlflow server --app-name wikilm`` runs MLflow's basic-auth app with these additions, so
the rules hold for every client, not only for ``wikilm``'s own commands:

- ``policy``: a guard in front of MLflow's registry endpoints (who may register versions,
  set ``challenger`` and the ``wikilm.*`` tags; ``champion`` never moves through them);
- ``decisions``: approve, reject, promote and roll back, judged by the server's own rules
  (``config``) and serialised per model in the database;
- ``records``: the append-only decision rows and the reviewers' group, in the auth database;
- ``api`` and ``page``: the JSON endpoints and the reviewers' approval page;
- ``app``: the ``mlflow.app`` entry point that puts them together.
"""
