#!/bin/sh
# Start the MLflow tracking server with basic auth and the wikilm app (--app-name wikilm):
# the promotion rules, the reviewers' group and the approval page live in the server. Its
# rules come from WIKILM_SERVER_CONFIG (a YAML file), or, without one, from a file written
# here naming WIKILM_PIPELINE_ACCOUNT with the default rules (approval: manual, four-eyes).
# MLFLOW_APP_NAME=basic-auth runs MLflow's basic-auth app alone. Its user database comes from the
# environment, written to the auth config MLflow reads at start-up; the admin's password
# stays in the environment (MLFLOW_AUTH_ADMIN_PASSWORD), never on disk, as does the key that
# signs the auth app's CSRF tokens (MLFLOW_FLASK_SERVER_SECRET_KEY).
set -eu
# Refuse to start with a secret unset, empty or still infra/.env.example's placeholder (one
# line naming each). The S3 key may be absent (an instance role, say), not a placeholder.
sh "$(dirname "$0")/../check-secrets.sh" MLFLOW_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY \
  MLFLOW_BACKEND_STORE_URI MLFLOW_AUTH_DATABASE_URI 'AWS_SECRET_ACCESS_KEY?'
config="$(mktemp -d)/basic_auth.ini"
cat > "$config" <<INI
[mlflow]
default_permission = READ
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
admin_username = ${MLFLOW_ADMIN_USERNAME}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# Each request's password check is a deliberately slow hash; a stage logs hundreds. Cached
# for a minute per worker, so a changed or removed password stops working within a minute.
auth_cache_ttl_seconds = 60
INI
export MLFLOW_AUTH_CONFIG_PATH="$config"
app="${MLFLOW_APP_NAME:-wikilm}"
if [ "$app" = wikilm ] && [ -z "${WIKILM_SERVER_CONFIG:-}" ]; then
  : "${WIKILM_PIPELINE_ACCOUNT:?set it to the account the pipeline signs in as}"
  export WIKILM_SERVER_CONFIG="$(dirname "$config")/wikilm.yaml"
  printf 'pipeline_account: "%s"\n' "$WIKILM_PIPELINE_ACCOUNT" > "$WIKILM_SERVER_CONFIG"
fi
export MLFLOW_AUTH_ADMIN_PASSWORD="$MLFLOW_ADMIN_PASSWORD"
exec mlflow server \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  --serve-artifacts \
  --app-name "$app" \
  --host "${MLFLOW_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}"
