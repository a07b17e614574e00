"""Stand-in k3s: server (HTTPS API on 6443 holding the cluster state), agent, kubectl subset."""
