# What this firmware reports as current_fw_title / current_fw_version (spec §10.1).
FW_TITLE = "tb-micropython"
FW_VERSION = "0.1.0"
