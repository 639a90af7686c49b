#!/bin/sh
# One-shot set-up of the object store: docker-compose.yml's `buckets` service runs it in the
# minio/mc image. It is the only user of MinIO's root account: it creates the two buckets,
# then one access key per service, each with a policy limited to the one bucket it needs
# (list it; read, write and delete its objects; nothing else):
#
#   key (infra/.env)          used by                                         bucket
#   MLFLOW_S3_ACCESS_KEY_ID   the MLflow server (its artifact store)          MLFLOW_BUCKET
#   WORKER_S3_ACCESS_KEY_ID   the Prefect worker (the DVC remote)             DVC_BUCKET
#   DVC_S3_ACCESS_KEY_ID      data scientists' checkouts (the DVC remote)     DVC_BUCKET
#
# No client needs the MLflow bucket: the server proxies every artifact upload and download
# (mlflow server --serve-artifacts, infra/mlflow/serve.sh). Running it again is safe: the
# keys' secrets are reset to the .env values and the policies rewritten.
set -eu
here=$(dirname "$0")
sh "$here/../check-secrets.sh" MINIO_ROOT_USER MINIO_ROOT_PASSWORD MLFLOW_BUCKET DVC_BUCKET \
  MLFLOW_S3_ACCESS_KEY_ID MLFLOW_S3_SECRET_ACCESS_KEY \
  WORKER_S3_ACCESS_KEY_ID WORKER_S3_SECRET_ACCESS_KEY \
  DVC_S3_ACCESS_KEY_ID DVC_S3_SECRET_ACCESS_KEY

# One key per service: a key given twice would get the last one's secret and policy.
seen=" $MINIO_ROOT_USER "
for key in "$MLFLOW_S3_ACCESS_KEY_ID" "$WORKER_S3_ACCESS_KEY_ID" "$DVC_S3_ACCESS_KEY_ID"; do
  case $seen in
    *" $key "*)
      echo "refusing to start: the access key '$key' is given twice in infra/.env; each service (and the root account) needs its own" >&2
      exit 78 ;;
  esac
  seen="$seen$key "
done

mc alias set store "${MINIO_URL:-http://minio:9000}" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "store/$MLFLOW_BUCKET" "store/$DVC_BUCKET"

# bucket_policy NAME BUCKET: the policy NAME, read/write on BUCKET only.
bucket_policy() {
  file="${TMPDIR:-/tmp}/$1.json"
  cat > "$file" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::$2"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::$2/*"]
    }
  ]
}
JSON
  mc admin policy create store "$1" "$file"
  rm -f "$file"
}

# service_key ACCESS_KEY SECRET_KEY POLICY: a MinIO user with that key pair and that policy.
service_key() {
  mc admin user add store "$1" "$2"
  if ! out=$(mc admin policy attach store "$3" --user "$1" 2>&1); then
    case $out in
      *"already in effect"*) ;;  # a second run: attached the first time
      *) echo "$out" >&2; exit 1 ;;
    esac
  fi
}

bucket_policy wikilm-mlflow-artifacts "$MLFLOW_BUCKET"
bucket_policy wikilm-dvc-remote "$DVC_BUCKET"
service_key "$MLFLOW_S3_ACCESS_KEY_ID" "$MLFLOW_S3_SECRET_ACCESS_KEY" wikilm-mlflow-artifacts
service_key "$WORKER_S3_ACCESS_KEY_ID" "$WORKER_S3_SECRET_ACCESS_KEY" wikilm-dvc-remote
service_key "$DVC_S3_ACCESS_KEY_ID" "$DVC_S3_SECRET_ACCESS_KEY" wikilm-dvc-remote
echo "object store ready: buckets $MLFLOW_BUCKET and $DVC_BUCKET, one key per service"
