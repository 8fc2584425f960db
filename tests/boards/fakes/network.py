# A stand-in for network on the unix port: WLAN follows a scripted list of status() values.
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_WRONG_PASSWORD = 202
STAT_NO_AP_FOUND = 201
STAT_CONNECT_FAIL = 203
STAT_BEACON_TIMEOUT = 200
STAT_HANDSHAKE_TIMEOUT = 204
names = []
script = []  # status values after each connect(); the last one repeats
calls = []


def hostname(name=None):
    names.append(name)


class WLAN:
    IF_STA = 0

    def __init__(self, iface):
        self.st = STAT_IDLE
        self.up = False
        self.seq = []

    def active(self, on=None):
        if on is not None:
            self.up = on
            calls.append(("active", on))
        return self.up

    def config(self, **kw):
        calls.append(("config", kw))

    def connect(self, ssid, pw):
        calls.append(("connect", ssid))
        self.seq = list(script.pop(0)) if script else [STAT_GOT_IP]

    def disconnect(self):
        calls.append(("disconnect",))
        self.seq = [STAT_IDLE]

    def status(self, param=None):
        if param == "rssi":  # documented for ESP32 and rp2: status('rssi') in dBm
            return -61
        if len(self.seq) > 1:
            return self.seq.pop(0)
        return self.seq[0] if self.seq else STAT_IDLE

    def isconnected(self):
        return self.status() == STAT_GOT_IP

    def ifconfig(self):
        return ("192.0.2.7", "255.255.255.0", "192.0.2.1", "192.0.2.1")
