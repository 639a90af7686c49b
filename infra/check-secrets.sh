#!/bin/sh
# Refuse to start a service whose secrets are not set: every service of docker-compose.yml
# calls this first. A variable named here that is unset, empty, or still holds a placeholder
# of infra/.env.example (a value containing "change-me") gets one line on stderr naming it;
# if any does, the script exits with 78 (EX_CONFIG) and the service does not start.
# Otherwise it runs the command after "--", if one is given, in its place (exec).
#
#   sh infra/check-secrets.sh NAME... [-- COMMAND [ARG...]]
#
# NAME? (a trailing "?", quoted) may be unset or empty, but not a placeholder. Values are never
# printed. Plain POSIX sh: it runs in the project image (dash) and, mounted read-only at
# /wikilm/check-secrets.sh, in the PostgreSQL, MinIO and mc containers.
set -eu

refused=0
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  name=$1
  shift
  optional=false
  case $name in
    *\?) optional=true; name=${name%\?} ;;
  esac
  case $name in
    "" | [0-9]* | *[!A-Za-z0-9_]*)
      echo "check-secrets.sh: '$name' is not a variable name" >&2
      exit 2 ;;
  esac
  eval "value=\${$name-}"
  if [ -z "$value" ]; then
    if [ "$optional" = false ]; then
      echo "refusing to start: $name is unset or empty; set it in infra/.env (see infra/.env.example)" >&2
      refused=1
    fi
  else
    case $value in
      *change-me* | *CHANGE-ME* | *changeme* | *CHANGEME*)
        echo "refusing to start: $name still holds a change-me placeholder of infra/.env.example; set a real secret in infra/.env" >&2
        refused=1 ;;
    esac
  fi
done
if [ "$refused" -ne 0 ]; then
  exit 78
fi
if [ "$#" -gt 0 ]; then
  shift  # the "--"
  if [ "$#" -gt 0 ]; then
    exec "$@"
  fi
fi
