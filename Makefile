# Convenience targets; each is one script, so CI and people run the same thing.
.PHONY: test demo dist fuzz bench

test:            ## the whole test suite (installs dbus, mbpoll... when missing)
	scripts/test

demo:            ## simulated meter and inverter on a private D-Bus
	cargo run --release -- demo

dist:            ## static armv7 GX binary + service/ as target/dist/*.tar.gz
	scripts/dist

fuzz:            ## every fuzz target for 60 s (nightly)
	fuzz/run.sh 60

bench:           ## wire, engine and whole-daemon figures
	cargo bench -p dmc-core --bench wire
	cargo bench -p dbus-modbus-client --bench engine
	scripts/bench-daemon 30
