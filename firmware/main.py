# Entry point on every board: `micropython main.py [config.json]` on the unix port; on a
# board, main.py runs at boot and reads config.json from the file system.
import asyncio
import sys

import config


def main(argv):
    path = argv[1] if len(argv) > 1 else "config.json"
    try:
        cfg = config.load(path)
    except config.ConfigError as e:
        print(e)
        return 2
    import hal
    from app import App

    app = App(cfg, hal.Hal(cfg))
    try:
        asyncio.run(app.run())
    except KeyboardInterrupt:
        print("device: stopped (%d sent, %d failed)" % (app.sent, app.failed))
    except Exception as e:  # noqa: the last word before a board resets; say what it was
        print("device: fatal: %s: %s" % (type(e).__name__, e))
        return 1
    return 0


rc = main(sys.argv)
if rc:
    sys.exit(rc)
