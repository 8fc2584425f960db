"""Over HTTP the reference app logs HTTP statuses, not CoAP codes (issue 15 item 12): a posted sample
is `telemetry {...} -> 200`, as `-> 2.01` is over CoAP."""
from test_firmware import Device, write_config


def test_http_reports_are_logged_with_the_http_status(tbsim, tmp_path):
    dev = Device(write_config(tmp_path, transport="http", port=tbsim.http_port, token=tbsim.token))
    try:
        line = dev.wait_for('telemetry {"humidity"', timeout=20)
        assert line and line.endswith(" -> 200"), dev.output()
    finally:
        dev.stop()
    assert " -> 2.0" not in dev.output(), dev.output()


def test_coap_reports_keep_the_coap_code(tbsim, tmp_path):
    dev = Device(write_config(tmp_path, port=tbsim.coap_port, token=tbsim.token))
    try:
        line = dev.wait_for('telemetry {"humidity"', timeout=20)
        assert line and line.endswith(" -> 2.01"), dev.output()
    finally:
        dev.stop()
