"""The promises the base manifests make, checked (scripts/check-deploy.sh):
secure by default, probes on the plaintext health port, and a grace period
that covers the shutdown delay, the drain and the worker's stop."""
import sys

import yaml

# The worker's stop: its ledger activities time out after 10 s (README, Deploy).
WORKER_STOP_SECONDS = 10
# The webhook relay's stop: at most RELAY_STOP in src/app.rs.
RELAY_STOP_SECONDS = 12


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def main():
    errors = []
    config = load("deploy/base/configmap.yaml")["data"]
    pod = load("deploy/base/deployment.yaml")["spec"]["template"]["spec"]
    policy = load("deploy/base/networkpolicy.yaml")["spec"]
    (container,) = pod["containers"]

    if config.get("LOYALTY_REQUIRE_API_KEYS") != "true":
        errors.append("the base must set LOYALTY_REQUIRE_API_KEYS: \"true\"")
    keys_file = config.get("LOYALTY_API_KEYS_FILE", "")
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    keys_volume = next((n for n, path in mounts.items() if keys_file.startswith(path + "/")), None)
    secret = (volumes.get(keys_volume) or {}).get("secret") if keys_volume else None
    if not secret or secret.get("optional", False):
        errors.append(f"LOYALTY_API_KEYS_FILE ({keys_file!r}) must be in a mounted, required Secret")

    health_port = int(config.get("LOYALTY_HEALTH_ADDR", ":0").rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if ports.get("health") != health_port:
        errors.append(f"the container's port 'health' must be LOYALTY_HEALTH_ADDR's port {health_port}")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        port = container.get(probe, {}).get("grpc", {}).get("port")
        if port != health_port:
            errors.append(f"{probe} must use the plaintext health port {health_port}, not {port}")

    delay = int(config.get("LOYALTY_SHUTDOWN_DELAY_SECONDS", "0"))
    drain = int(config["LOYALTY_DRAIN_SECONDS"])
    grace = int(pod["terminationGracePeriodSeconds"])
    if delay < 1:
        errors.append("the base must set a LOYALTY_SHUTDOWN_DELAY_SECONDS for endpoint propagation")
    stops = WORKER_STOP_SECONDS + RELAY_STOP_SECONDS
    if grace < delay + drain + stops:
        errors.append(
            f"terminationGracePeriodSeconds {grace} < delay {delay} + drain {drain} + worker and relay stop {stops}"
        )

    admitted = set()
    for rule in policy.get("ingress", []):
        if not rule.get("from"):
            errors.append("a NetworkPolicy ingress rule without 'from' admits every pod")
        for port in rule.get("ports") or []:
            admitted.add(port["port"])
        if not rule.get("ports"):
            errors.append("a NetworkPolicy ingress rule without 'ports' opens every port")
    if "Ingress" not in policy.get("policyTypes", []) or not {"grpc", "health"} <= admitted:
        errors.append("the NetworkPolicy must govern ingress to the 'grpc' and 'health' ports")

    for e in errors:
        print(f"check-deploy: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(
        f"check-deploy: keys required, probes on :{health_port}, grace {grace}s >= {delay}+{drain}+{stops}s,"
        " NetworkPolicy on grpc and health",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
