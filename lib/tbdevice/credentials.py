# Credentials that must survive a reboot, kept under the config's state_dir
# (on the unix port that directory stands in for flash).
import json
import os

_NAME = "/tb_credentials.json"


def load(state_dir):
    """The stored credentials dict, or None when there are none (or they are unreadable)."""
    try:
        with open(state_dir + _NAME) as f:
            creds = json.load(f)
    except (OSError, ValueError):
        return None
    return creds if isinstance(creds, dict) and creds.get("token") else None


def save(state_dir, creds):
    # Write a new file, then rename over the old one: a reset mid-write leaves one whole file.
    tmp = state_dir + _NAME + ".tmp"
    with open(tmp, "w") as f:
        json.dump(creds, f)
    os.rename(tmp, state_dir + _NAME)
