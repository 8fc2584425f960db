# ROMFS on the unix port (docs/memory.md, "ROMFS"): a board keeps its ROMFS image in a flash
# partition and runs the .mpy in it in place; the unix port has no flash, so this boot shim
# stands in for it. First thing, before anything of the application is imported, it
# allocates the image's buffer (one contiguous block, never freed: the "flash"), mounts it
# at /rom with vfs.VfsRom and puts /rom and /rom/lib on sys.path as the firmware does on a
# board, then runs main.py. Run by the unix port:
#
#   micropython -X heapsize=N tools/romboot.py IMAGE build/UNIX/main.py config.json
#
# IMAGE is the factory image (`make romfs BOARD=UNIX`: build/UNIX.romfs). When the OTA slot
# chosen for this boot (firmware/bootslot.py, imported from main.py's folder) holds an image
# (tools/bundle.py --romfs), that one is mounted instead. The heap then holds the image plus
# what the app uses: -X heapsize = image size + the app's heap.
import gc
import os
import sys
import vfs

image, main = sys.argv[1], sys.argv[2]
sys.argv[:] = [main] + sys.argv[3:]
home = main.rsplit("/", 1)[0] if "/" in main else "."
sys.path[:] = [home]
import bootslot  # noqa: E402 (from the file system, like main.py: it picks the image)

# home last, as a board's file system root: the boot shim stays importable once main.py let it go
sys.path[:] = ["", ".frozen", "/rom", "/rom/lib", home]
bootslot.select(sys.argv[1] if len(sys.argv) > 1 else "config.json")
image = bootslot.rom_image() or image
del bootslot  # main.py holds it only while an image is on trial
gc.collect()
rom = bytearray(os.stat(image)[6])
with open(image, "rb") as f:
    f.readinto(rom)
vfs.mount(vfs.VfsRom(rom), "/rom")
del image, f
gc.collect()
with open(main) as f:
    code = compile(f.read(), main, "exec")
del f
gc.collect()
exec(code, {"__name__": "__main__"})
