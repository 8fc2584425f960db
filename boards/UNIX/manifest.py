# Freezes the firmware into a custom unix-port build (make firmware BOARD=UNIX MICROPYTHON=<checkout>).
include("$(PORT_DIR)/variants/manifest.py")
include("../../lib/tbdevice")  # and lib/coap through it
package("httpclient", base_path="../../lib")
module("hal.py")
import os  # noqa: E402 (manifests are Python run by the build, in this file's directory)

for _m in sorted(os.listdir("../../firmware")):  # every firmware module but main.py (it stays on the file system)
    if _m.endswith(".py") and _m != "main.py":
        module(_m, base_path="../../firmware")
