#!/bin/sh
# Entry point of the Stoker image: run one service, `python -m services.<service> [args...]`.
#   stoker-service gateway | pool | pool.sim [--host H --port P] | generation | audit
#   stoker-service stoker COMMAND ...     (the stoker CLI)
# `exec` makes the service PID 1 (or tini's child), so SIGTERM reaches it and it drains cleanly.
set -eu

usage() {
    echo "usage: stoker-service SERVICE [ARGS...]   (SERVICE: pool, pool.sim, generation, audit, gateway)" >&2
    echo "       stoker-service stoker COMMAND [ARGS...]" >&2
}

if [ "$#" -eq 0 ]; then
    usage
    exit 64
fi
service=$1
shift
case "$service" in
    -h | --help | help)
        usage
        exit 0
        ;;
    stoker)
        exec stoker "$@"
        ;;
    "" | *[!a-z0-9_.]* | .* | *. | *..*)
        echo "stoker-service: not a service name: $service" >&2
        usage
        exit 64
        ;;
esac
exec python -m "services.$service" "$@"
