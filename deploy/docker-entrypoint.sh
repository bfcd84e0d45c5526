#!/bin/sh
# Initialise the data directory on first start (when MUXER_GENESIS names a genesis file),
# then exec muxernode with the container's arguments.
set -eu
data="${MUXER_DATA_DIR:-/data/node}"
if [ "${1:-}" = "run" ] && [ -n "${MUXER_GENESIS:-}" ] && [ ! -d "$data" ]; then
    muxernode init --genesis "$MUXER_GENESIS" --data-dir "$data"
fi
exec muxernode "$@"
