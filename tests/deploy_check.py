"""Offline checks of the deployment files (deploy/compose/, deploy/k8s/), for CTest:

    deploy_check.py compose SOURCE EMBERD   docker-compose config -q; yamllint; haproxy -c on
                                            haproxy.cfg; every emberd flag the compose file
                                            passes is one emberd --help lists; Prometheus
                                            scrapes every replica's --metrics-listen port
    deploy_check.py k8s SOURCE EMBERD       yamllint -s on every manifest; the Deployment's
                                            flags are emberd's, its probes hit /readyz and
                                            /livez on the --metrics-listen port, it and the
                                            Job run as the Dockerfile's user on a read-only
                                            root filesystem, the serving mount is read-only
    deploy_check.py kubectl SOURCE          kubectl kustomize deploy/k8s: every file parses as
                                            a Kubernetes object (fails without kubectl;
                                            kubectl's schema validation needs a
                                            cluster, docs/cluster.md)

Prints what failed and exits 1; nothing here starts a container or reaches a network."""
import os
import re
import shutil
import subprocess
import sys

import yaml

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(argv, what, cwd=None):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                       cwd=cwd, timeout=120)
    check(r.returncode == 0, what + ("" if r.returncode == 0 else ":\n" + r.stdout.strip()))
    return r.stdout


def emberd_flags(emberd):
    text = subprocess.run([emberd, "--help"], stdout=subprocess.PIPE, universal_newlines=True, timeout=30).stdout
    return set(re.findall(r"^\s+--([a-z-]+)", text, re.M))


def flags_of(args):
    return [a[2:].split("=", 1)[0] for a in args if a.startswith("--")]


def dockerfile_user(source):
    with open(os.path.join(source, "Dockerfile")) as f:
        return re.search(r"^USER (\d+):(\d+)", f.read(), re.M).groups()


def yamllint(paths):
    conf = "{extends: default, rules: {line-length: {max: 120}, document-start: disable, truthy: {check-keys: false}}}"
    run(["yamllint", "-s", "-d", conf] + paths, "yamllint " + " ".join(os.path.relpath(p) for p in paths))


def compose(source, emberd):
    d = os.path.join(source, "deploy", "compose")
    f = os.path.join(d, "docker-compose.yml")
    run(["docker-compose", "-f", f, "config", "-q"], "docker-compose config -q accepts docker-compose.yml")
    yamllint([f, os.path.join(d, "prometheus.yml")])
    run(["haproxy", "-c", "-f", os.path.join(d, "haproxy.cfg")], "haproxy -c accepts haproxy.cfg")
    with open(f) as fh:
        doc = yaml.safe_load(fh)
    known = emberd_flags(emberd)
    replicas = {n: s for n, s in doc["services"].items() if n.startswith("emberd-")}
    check(len(replicas) == 3, "three emberd replicas (%s)" % ", ".join(sorted(replicas)))
    ports = set()
    for name, svc in sorted(replicas.items()):
        cmd = svc["command"]
        unknown = [x for x in flags_of(cmd) if x not in known]
        check(not unknown, "%s: every flag is emberd's (unknown: %s)" % (name, unknown))
        m = cmd[cmd.index("--metrics-listen") + 1]
        ports.add(m.rsplit(":", 1)[1])
        check(any(v.endswith(":/models:ro") for v in svc["volumes"]), "%s: mounts the repository read-only" % name)
    with open(os.path.join(d, "prometheus.yml")) as fh:
        prom = yaml.safe_load(fh)
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    want = {"%s:%s" % (n, p) for n in replicas for p in ports}
    check(targets == want, "Prometheus scrapes every replica's metrics port (%s)" % sorted(targets))


def k8s(source, emberd):
    d = os.path.join(source, "deploy", "k8s")
    files = sorted(os.path.join(root, n) for root, _, names in os.walk(d) for n in names if n.endswith(".yaml"))
    yamllint(files)
    docs = []
    for f in files:
        with open(f) as fh:
            docs += [x for x in yaml.safe_load_all(fh) if x and "kind" in x]  # not the adapter rules
    by_kind = {}
    for x in docs:
        by_kind.setdefault(x["kind"], []).append(x)
    uid, gid = dockerfile_user(source)
    dep = by_kind["Deployment"][0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    unknown = [x for x in flags_of(c["args"]) if x not in emberd_flags(emberd)]
    check(not unknown, "Deployment: every flag is emberd's (unknown: %s)" % unknown)
    args = dict(a[2:].split("=", 1) for a in c["args"] if "=" in a)
    mport = int(args["metrics-listen"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("metrics") == mport, "Deployment: port 'metrics' is --metrics-listen's %d" % mport)
    check(ports.get("grpc") == int(args["listen"].rsplit(":", 1)[1]), "Deployment: port 'grpc' is --listen's")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["readinessProbe"]["httpGet"]["port"] == "metrics",
          "Deployment: readiness probe GET /readyz on the metrics port")
    check(c["livenessProbe"]["httpGet"]["path"] == "/livez" and c["livenessProbe"]["httpGet"]["port"] == "metrics",
          "Deployment: liveness probe GET /livez on the metrics port")
    grace = pod["terminationGracePeriodSeconds"] * 1000
    check(int(args["drain-ms"]) + int(args["grace-ms"]) < grace,
          "Deployment: --drain-ms + --grace-ms fit in terminationGracePeriodSeconds")
    for kind, spec in (("Deployment", pod), ("Job", by_kind["Job"][0]["spec"]["template"]["spec"])):
        sc = spec["securityContext"]
        check(str(sc["runAsUser"]) == uid and str(sc["runAsGroup"]) == gid and sc["runAsNonRoot"],
              "%s: runs as the Dockerfile's user %s:%s" % (kind, uid, gid))
        csc = spec["containers"][0]["securityContext"]
        check(csc["readOnlyRootFilesystem"] and not csc["allowPrivilegeEscalation"],
              "%s: read-only root filesystem, no privilege escalation" % kind)
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    check(mounts["repo"].get("readOnly") and mounts["repo"]["mountPath"] == args["models"],
          "Deployment: the repository is mounted read-only at --models")
    claims = {x["metadata"]["name"]: x["spec"]["accessModes"] for x in by_kind["PersistentVolumeClaim"]}
    serving = next(v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if v["name"] == "repo")
    check(claims.get(serving) == ["ReadOnlyMany"], "Deployment: claim %s is ReadOnlyMany" % serving)
    job = by_kind["Job"][0]["spec"]["template"]["spec"]
    writer = job["volumes"][0]["persistentVolumeClaim"]["claimName"]
    check(claims.get(writer) == ["ReadWriteMany"], "Job: claim %s is ReadWriteMany" % writer)
    services = {x["metadata"]["name"]: x["spec"] for x in by_kind["Service"]}
    check(any(s.get("clusterIP") == "None" for s in services.values()), "a headless Service (client-side balancing)")
    check(any(s.get("type") == "ClusterIP" and s.get("clusterIP") != "None" for s in services.values()),
          "a ClusterIP Service (for a balancer)")
    for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler"):
        check(kind in by_kind, "a %s" % kind)


def kubectl(source):
    # deploy/install-deps.sh installs Debian's kubernetes-client where no kubectl is installed
    check(shutil.which("kubectl") is not None, "kubectl is installed (deploy/install-deps.sh)")
    out = run(["kubectl", "kustomize", os.path.join(source, "deploy", "k8s")], "kubectl kustomize deploy/k8s")
    kinds = re.findall(r"^kind: (\w+)", out, re.M)
    check(len(kinds) >= 10, "kubectl kustomize rendered %d objects: %s" % (len(kinds), ", ".join(sorted(kinds))))
    return 0


def main():
    what, source = sys.argv[1], os.path.abspath(sys.argv[2])
    if what == "compose":
        compose(source, sys.argv[3])
    elif what == "k8s":
        k8s(source, sys.argv[3])
    elif what == "kubectl":
        kubectl(source)
    else:
        print("usage: deploy_check.py compose|k8s|kubectl SOURCE [EMBERD]")
        return 2
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
