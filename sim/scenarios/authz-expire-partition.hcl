# A certificate that expires during a partition. Peer 3 writes on its side
# until its certificate ends at 3 s (and keeps writing after, as a host
# that did not notice); the other side never merged its records while they
# were valid. Before the fix (docs/REPLICA.md, "Cut-off origins"), a peer
# whose clock had passed the expiry answered every record of peer 3 with
# an ordinary error: dropped, offered again in every anti-entropy session,
# and the peers that merged them before the expiry kept them, so the
# digests never agreed. Now the records stamped before the expiry count
# everywhere, the others are dead stubs everywhere, and each peer sweeps
# its replica once its clock passes the expiry (go test ./sim runs seeds
# 1 and 2 in TestExpireDuringPartition).
name     = "authz-expire-partition"
peers    = 30
seed     = 1
duration = "20s"
skew     = "2s"

network {
  latency = "5ms"
  jitter  = "5ms"
}

workload {
  rate    = 20
  reads   = 0.3
  deletes = 0.2
  keys    = 20
  stop    = "18s"
}

event {
  at     = "1s"
  action = "partition"
  groups = 2
}

event {
  at     = "3s"
  action = "expire"
  node   = 3
}

event {
  at     = "7s"
  action = "heal"
}

expect {
  converge_within = "30s"
}
