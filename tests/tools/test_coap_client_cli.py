"""tools/coap-client as a newcomer meets it (issue 15 item 12): -h is the usage (exit 0), and a
request that changed something says so on stderr while stdout stays the payloads."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENT = os.path.join(ROOT, "tools", "coap-client")


def client(*args):
    return subprocess.run([CLIENT, *args], capture_output=True, text=True, timeout=60)


def test_dash_h_prints_the_usage():
    for flag in ("-h", "--help"):
        r = client(flag)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert r.stdout.startswith("usage: coap-client ") and "-m METHOD" in r.stdout, r.stdout
    r = client("-x")  # an unknown option is still an error
    assert r.returncode == 2 and r.stderr.startswith("coap-client: unknown option -x\nusage:"), r.stderr


def test_a_post_says_it_was_taken_and_stdout_stays_the_payloads(tbsim):
    base = "coap://127.0.0.1:%d/api/v1/" % tbsim.coap_port
    r = client("-m", "post", "-e", '{"x":1}', base + tbsim.token + "/telemetry")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "2.01 Created\n")
    r = client(base + tbsim.token + "/attributes?clientKeys=nothing")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "coap-client: 4.04 Not Found\n")
    r = client("-m", "post", "-e", '{"x":1}', base + "NOT_A_TOKEN/telemetry")
    assert (r.returncode, r.stderr) == (1, "coap-client: 4.01 Unauthorized\n")
