#!/bin/sh
# Removes what install.sh added; leaves /data/dbus-modbus-client itself and the
# settings in place. Idempotent. ROOT=/some/dir works as for install.sh.
set -eu
ROOT="${ROOT:-}"
DIR="${DIR:-/data/dbus-modbus-client}"
NAME=dbus-modbus-client
SERIAL=ttyUSB0
[ -r "$ROOT$DIR/service/config" ] && . "$ROOT$DIR/service/config"

if [ -L "$ROOT/service/$NAME" ]; then
    command -v svc >/dev/null 2>&1 && [ -z "$ROOT" ] && svc -d "/service/$NAME" || true
    rm -f "$ROOT/service/$NAME"
    echo "removed /service/$NAME"
fi
RC="$ROOT/data/rc.local"
if [ -f "$RC" ] && grep -q "^# BEGIN $NAME" "$RC"; then
    sed -i "/^# BEGIN $NAME/,/^# END $NAME\$/d" "$RC"
    echo "unhooked /data/rc.local"
fi
START="$ROOT/opt/victronenergy/serial-starter/start-tty.sh"
TTY=$(basename "$SERIAL")
[ -x "$START" ] && "$START" "$TTY" && echo "serial-starter given back $TTY"
exit 0
