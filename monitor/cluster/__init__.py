"""Several machines share the cameras (``cluster:`` in streams.yaml): membership, claims and takeovers over etcd.

``rendezvous`` which node should run which camera (pure); ``etcd`` a small client for etcd's v3 JSON gateway;
``node`` a node's lease, its claims and their fencing tokens (threads of their own, never the detection loop);
``takeover`` what the engine does when it wins or loses a camera; ``status`` the cluster as the CLI shows it.
"""
