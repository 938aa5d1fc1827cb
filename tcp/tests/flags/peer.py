# The remote end for kernel_flags.rs: plays a TCP peer at PEER_IP with an AF_PACKET socket
# in namespace B, against real Linux sockets in namespace A (where this process runs).
# PEER_IP is configured nowhere, so B's kernel never answers: every reply of A's kernel
# reaches us. One case per stdin line, `ID FLAGS LEN STATE SEQ` (FLAGS: the TCP flag byte;
# SEQ relative to our ISN, 0);
# one result line per case on stdout:
#   ID replies=FLAGS:SEQ:ACK:LEN,... after=STATE counters=Name=delta,...
# SEQ relative to the kernel's ISN (absolute when the reply is a reset: `abs` prefix), ACK
# relative to ours (0). Usage: peer.py NETNS_B IFACE_B KERNEL_MAC PEER_MAC KERNEL_IP PEER_IP
import ctypes, os, select, socket, struct, sys, time

ns_b, ifname, kmac, pmac, kip, pip = sys.argv[1:7]
kmac = bytes.fromhex(kmac.replace(":", ""))
pmac = bytes.fromhex(pmac.replace(":", ""))
KIP, PIP = socket.inet_aton(kip), socket.inet_aton(pip)
WATCHED = sys.argv[7].split(",")
FIN, SYN, RST, PSH, ACK, URG = 1, 2, 4, 8, 16, 32
LPORT = 8080  # the kernel's listener
WAIT = 0.1  # how long a case waits for replies after its segment

libc = ctypes.CDLL(None, use_errno=True)
own = os.open("/proc/self/ns/net", os.O_RDONLY)
fd = os.open(ns_b, os.O_RDONLY)
assert libc.setns(fd, 0x40000000) == 0, "setns B"
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
raw.bind((ifname, 0))
assert libc.setns(own, 0x40000000) == 0, "setns back"

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

ip_id = 0
def send(sport, dport, seq, ack, flags, payload=b"", win=65535, opts=b""):
    global ip_id
    ip_id += 1
    doff = (20 + len(opts)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, doff << 4, flags, win, 0, 0) + opts + payload
    c = csum(PIP + KIP + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ip_id & 0xFFFF, 0x4000, 64, 6, 0, PIP, KIP)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    raw.send(kmac + pmac + b"\x08\x00" + ip + tcp)

queues = {}  # (kernel port, peer port) -> [(seq, ack, flags, len)]
def pump(timeout):
    end = time.time() + timeout
    while True:
        left = end - time.time()
        if left <= 0:
            return
        r, _, _ = select.select([raw], [], [], left)
        if not r:
            return
        f = raw.recv(65535)
        ip = f[14:]
        if f[12:14] != b"\x08\x00" or ip[9] != 6 or ip[12:16] != KIP or ip[16:20] != PIP:
            continue
        ihl = (ip[0] & 15) * 4
        tot = struct.unpack("!H", ip[2:4])[0]
        t = ip[ihl:tot]
        sport, dport, seq, ack, doff, flags = struct.unpack("!HHIIBB", t[:14])
        queues.setdefault((sport, dport), []).append((seq, ack, flags, len(t) - (doff >> 4) * 4))

def expect(key, pred, what, timeout=2.0):
    end = time.time() + timeout
    while True:
        q = queues.get(key, [])
        if q:
            s = q.pop(0)
            if not pred(s):
                raise SystemExit(f"{key}: expected {what}, got {s}")
            return s
        if time.time() > end:
            raise SystemExit(f"{key}: expected {what}, got nothing")
        pump(0.01)

def counters():
    out = {}
    for fn in ("/proc/net/snmp", "/proc/net/netstat"):
        lines = open(fn).read().splitlines()
        for names, vals in zip(lines[0::2], lines[1::2]):
            sec = names.split(":")[0]
            for n, v in zip(names.split()[1:], vals.split()[1:]):
                out[f"{sec}.{n}"] = int(v)
    return out

STATES = {"01": "ESTAB", "02": "SYN-SENT", "03": "SYN-RECV", "04": "FIN-WAIT-1", "05": "FIN-WAIT-2",
          "06": "TIME-WAIT", "07": "CLOSE", "08": "CLOSE-WAIT", "09": "LAST-ACK", "0A": "LISTEN",
          "0B": "CLOSING", "0C": "SYN-RECV"}
def tcp_state(kport, pport):
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        w = line.split()
        lp, rp = int(w[1].split(":")[1], 16), int(w[2].split(":")[1], 16)
        if (lp, rp) == (kport, pport):
            return STATES[w[3]]
    return "none"

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((kip, LPORT))
listener.listen(1024)
listener.setblocking(False)
keep = []  # every socket stays open until the end: closing one would send segments

MSS = struct.pack("!BBH", 2, 4, 1000)

def passive(pport, established=True):
    send(pport, LPORT, 0, 0, SYN, opts=MSS)
    s = expect((LPORT, pport), lambda s: s[2] == SYN | ACK and s[1] == 1, "SYN-ACK")
    isn = s[0]
    if not established:
        return None, isn
    send(pport, LPORT, 1, isn + 1, ACK)
    for _ in range(200):
        try:
            c, _ = listener.accept()
            keep.append(c)
            return c, isn
        except BlockingIOError:
            time.sleep(0.005)
    raise SystemExit("accept")

def setup(state, pport):
    """Drive a connection into `state`; returns (kernel port, kernel ISN)."""
    k = (LPORT, pport)
    if state == "LISTEN":
        return LPORT, 0
    if state in ("SYN-SENT", "SYN-RECV-SIM"):
        c = socket.socket()
        c.setblocking(False)
        keep.append(c)
        c.connect_ex((pip, pport))
        kp = None
        while kp is None:
            for (p, pp), q in queues.items():
                if pp == pport and q:
                    seq, _, flags, _ = q.pop(0)
                    assert flags == SYN, flags
                    kp, isn = p, seq
            pump(0.01)
        if state == "SYN-SENT":
            return kp, isn
        # Simultaneous open: our SYN crosses the kernel's, which answers with a SYN-ACK.
        send(pport, kp, 0, 0, SYN, opts=MSS)
        expect((kp, pport), lambda s: s[2] == SYN | ACK and s[0] == isn and s[1] == 1, "SYN-ACK")
        got = tcp_state(kp, pport)
        assert got == "SYN-RECV", f"set-up for a simultaneous open reached {got}"
        return kp, isn
    if state == "SYN-RECV":
        return LPORT, passive(pport, False)[1]
    c, isn = passive(pport)
    if state == "FIN-WAIT-2-ORPHAN":
        # close(), not shutdown(): once its FIN is ACKed the orphan becomes a TIME-WAIT sock
        # in substate FIN-WAIT-2, which /proc/net/tcp lists as FIN-WAIT-2.
        c.close()
        expect(k, lambda s: s[2] == FIN | ACK and s[0] == isn + 1, "FIN")
        send(pport, LPORT, 1, isn + 2, ACK)
        pump(0.005)
        state = "FIN-WAIT-2"
    elif state in ("FIN-WAIT-1", "FIN-WAIT-2", "CLOSING", "TIME-WAIT"):
        c.shutdown(socket.SHUT_WR)
        expect(k, lambda s: s[2] == FIN | ACK and s[0] == isn + 1, "FIN")
        if state == "FIN-WAIT-2" or state == "TIME-WAIT":
            send(pport, LPORT, 1, isn + 2, ACK)
        if state == "CLOSING":
            send(pport, LPORT, 1, isn + 1, FIN | ACK)
            expect(k, lambda s: s[2] == ACK and s[1] == 2, "ACK of the FIN")
        if state == "TIME-WAIT":
            send(pport, LPORT, 1, isn + 2, FIN | ACK)
            expect(k, lambda s: s[2] == ACK and s[1] == 2, "ACK of the FIN")
    if state in ("CLOSE-WAIT", "LAST-ACK"):
        send(pport, LPORT, 1, isn + 1, FIN | ACK)
        expect(k, lambda s: s[2] == ACK and s[1] == 2, "ACK of the FIN")
        if state == "LAST-ACK":
            c.shutdown(socket.SHUT_WR)
            expect(k, lambda s: s[2] == FIN | ACK and s[0] == isn + 1, "FIN")
    got = tcp_state(LPORT, pport)
    assert got == state, f"set-up for {state} reached {got}"
    return LPORT, isn

for line in sys.stdin:
    cid, flags, plen, state, seq = line.split()
    cid, flags, plen, seq = int(cid), int(flags), int(plen), int(seq)
    pport = 20000 + cid
    kport, isn = setup(state, pport)
    pump(0.005)
    stray = queues.get((kport, pport), [])
    assert not stray, f"case {cid}: segments before the injection: {stray}"
    before = counters()
    send(pport, kport, seq, 0, flags, bytes(range(plen)))
    pump(WAIT)
    after = counters()
    replies = []
    for s_seq, s_ack, s_flags, s_len in queues.pop((kport, pport), []):
        rel = f"abs{s_seq}" if s_flags & RST else str((s_seq - isn) & 0xFFFFFFFF)
        replies.append(f"{s_flags}:{rel}:{s_ack}:{s_len}")
    deltas = [f"{n}={after.get(n, 0) - before.get(n, 0)}" for n in WATCHED if after.get(n, 0) != before.get(n, 0)]
    missing = [n for n in WATCHED if n not in after]
    assert not missing, f"the kernel has no counter {missing}"
    print(f"{cid} replies={','.join(replies)} after={tcp_state(kport, pport)} counters={','.join(deltas)}", flush=True)
