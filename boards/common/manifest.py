# What every board's firmware freezes beside its port's own modules and its HAL (each
# boards/<BOARD>/manifest.py includes this file): the whole library, through the parts of lib/
# (lib/tbdevice/manifest.py requires every one: docs/boards.md), and every firmware module but
# main.py, which stays on the file system (boot runs /main.py; copy firmware/main.py there).
# Paths are relative to this file: the build runs each manifest in its own directory.
add_library("tbdevice", "../../lib")
require("tbdevice", library="tbdevice")
import os  # noqa: E402

for _m in sorted(os.listdir("../../firmware")):
    if _m.endswith(".py") and _m != "main.py":
        module(_m, base_path="../../firmware")
