#!/bin/sh
# Run at every boot from /data/rc.local (and by install.sh): re-creates the
# /service link and keeps serial-starter off the configured tty.
ROOT="${ROOT:-}"
DIR="${DIR:-/data/dbus-modbus-client}"
NAME=dbus-modbus-client
SERIAL=ttyUSB0
[ -r "$ROOT$DIR/service/config" ] && . "$ROOT$DIR/service/config"
# serial-starter knows ports by tty name; resolve by-id links to it.
case "$SERIAL" in /*) DEV="$SERIAL" ;; *) DEV="/dev/$SERIAL" ;; esac
TTY=$(basename "$(readlink -f "$ROOT$DEV" 2>/dev/null || echo "$DEV")")
[ -e "$ROOT/service/$NAME" ] || ln -s "$DIR/service" "$ROOT/service/$NAME"
STOP="$ROOT/opt/victronenergy/serial-starter/stop-tty.sh"
if [ -x "$STOP" ]; then
    "$STOP" "$TTY" && echo "serial-starter stopped on $TTY"
else
    echo "no serial-starter here ($STOP); nothing to stop on $TTY"
fi
