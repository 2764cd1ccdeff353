#!/bin/sh
# Installs dbus-modbus-client from /data/dbus-modbus-client on a GX.
#
#   sh /data/dbus-modbus-client/service/install.sh
#
# Idempotent: running it twice changes nothing the second time. It
#  1. makes the binary and run scripts executable,
#  2. links the service into /service (daemontools starts it within seconds),
#  3. hooks /data/rc.local so the link and the serial-starter exclusion are
#     re-created after every boot and firmware update (/service is a tmpfs),
#  4. takes serial-starter off the configured tty so it does not grab the port.
# ROOT=/some/dir runs it against a copy of the filesystem (used by the tests).
set -eu
ROOT="${ROOT:-}"
DIR="${DIR:-/data/dbus-modbus-client}"
NAME=dbus-modbus-client
SRC="$ROOT$DIR"
MARK_BEGIN="# BEGIN $NAME (added by $DIR/service/install.sh)"
MARK_END="# END $NAME"

[ -x "$SRC/$NAME" ] || chmod +x "$SRC/$NAME" 2>/dev/null || {
    echo "install.sh: $SRC/$NAME not found: copy the binary there first" >&2
    exit 1
}
chmod +x "$SRC/service/run" "$SRC/service/log/run" "$SRC/service/boot.sh"

mkdir -p "$ROOT/service"
if [ "$(readlink "$ROOT/service/$NAME" 2>/dev/null)" != "$DIR/service" ]; then
    rm -f "$ROOT/service/$NAME"
    ln -s "$DIR/service" "$ROOT/service/$NAME"
    echo "linked /service/$NAME -> $DIR/service"
fi

RC="$ROOT/data/rc.local"
mkdir -p "$ROOT/data"
[ -f "$RC" ] || printf '#!/bin/sh\n' > "$RC"
if ! grep -qF "$MARK_BEGIN" "$RC"; then
    {
        echo "$MARK_BEGIN"
        echo "sh $DIR/service/boot.sh"
        echo "$MARK_END"
    } >> "$RC"
    echo "hooked /data/rc.local"
fi
chmod +x "$RC"

ROOT="$ROOT" DIR="$DIR" sh "$SRC/service/boot.sh"
echo "installed; status: svstat /service/$NAME; log: tail -F /var/log/$NAME/current | tai64nlocal"
