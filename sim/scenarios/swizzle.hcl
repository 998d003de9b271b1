# Swizzle-clog: cut a random 20% of the peers one by one, then restore them
# in random order; clock skew up to ±3 s; a 3-way asymmetric partition.
name  = "swizzle"
peers = 50
seed  = 1
skew  = "3s"
duration = "50s"

network {
  latency = "10ms"
  jitter  = "10ms"
  reorder = 0.05
}

workload {
  rate    = 30
  reads   = 0.3
  deletes = 0.2
  keys    = 80
}

event {
  at       = "2s"
  action   = "swizzle"
  fraction = 0.2
  step     = "1s"
}

event {
  at         = "30s"
  action     = "partition"
  sides      = [0.2, 0.3, 0.5]
  asymmetric = true
}

event {
  at     = "42s"
  action = "heal"
}

expect {
  converge_within = "30s"
}
