"""The Helm chart, checked with the real helm binary and the Kubernetes schemas.

For every helm/daybook/ci/*-values.yaml: `helm lint --strict`, `helm template`, and each
rendered manifest validated (strict) against the Kubernetes 1.29 (the oldest with native
sidecars on by default), 1.33 and 1.35 schemas. The config the chart renders is checked by the
daybook binary itself (`serve --check-config`). A host chart (tests/helm/host-chart)
includes the sidecar the way platform teams will, and the tests assert what matters:
the sidecar is an init container with restartPolicy Always, probes are gRPC, the socket
volume is shared, the container is locked down.

Run: HELM=path/to/helm DAYBOOK=path/to/daybook python3 -m unittest tests/helm/test_chart.py
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import tomllib
import unittest
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "daybook"
HOST_CHART = ROOT / "tests" / "helm" / "host-chart"
HELM = os.environ.get("HELM", "helm")
DAYBOOK = os.environ.get("DAYBOOK", str(ROOT / "target" / "debug" / "daybook"))
KUBERNETES_VERSIONS = ["1.29.0", "1.33.0", "1.35.0"]
# Custom resources: not in the Kubernetes schemas; their shape is asserted below.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
# Standalone mode needs credentials (or an explicit auth.insecure): the least a test of
# other things sets.
WITH_AUTH = ("--set", "auth.existingSecret=daybook-credentials")


def helm(*args, check=True):
    run = subprocess.run([HELM, *args], capture_output=True, text=True)
    if check and run.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
    return run


def render(chart, *args):
    out = helm("template", "rel", str(chart), "--namespace", "metering", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    assert len(found) == 1, f"one {kind}, found {len(found)}"
    return found[0]


def daybook_config(docs):
    """The daybook.toml the chart renders (the dashboard is a ConfigMap too)."""
    found = [d for d in by_kind(docs, "ConfigMap") if "daybook.toml" in d.get("data", {})]
    assert len(found) == 1, f"one ConfigMap with daybook.toml, found {len(found)}"
    return found[0]["data"]["daybook.toml"]


def ci_values():
    return sorted((CHART / "ci").glob("*-values.yaml"))


def host_chart_dir(tmp):
    """The host chart with this chart unpacked as its dependency (offline)."""
    host = Path(tmp) / "host"
    shutil.copytree(HOST_CHART, host)
    shutil.copytree(CHART, host / "charts" / "daybook")
    return host


class Lint(unittest.TestCase):
    def test_lint_strict_for_every_ci_values_file(self):
        self.assertTrue(ci_values(), "ci/*-values.yaml exist")
        helm("lint", "--strict", str(CHART), *WITH_AUTH)
        for values in ci_values():
            with self.subTest(values=values.name):
                helm("lint", "--strict", str(CHART), "-f", str(values))

    def test_image_tag_is_the_app_version(self):
        chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        self.assertEqual(values["image"]["tag"], chart["appVersion"])
        self.assertEqual(chart["kubeVersion"], ">=1.29.0-0")


class Validate(unittest.TestCase):
    def test_every_rendered_manifest_is_valid_kubernetes(self):
        # Rendered for each version (the chart adapts, e.g. the preStop sleep from 1.30),
        # and validated against that version's schemas.
        for version in KUBERNETES_VERSIONS:
            with tempfile.TemporaryDirectory() as tmp:
                sets = [(v.name, render(CHART, "-f", str(v), "--kube-version", version)) for v in ci_values()]
                sets.append(("host-chart", render(host_chart_dir(tmp), "--kube-version", version)))
            for name, docs in sets:
                for doc in docs:
                    if doc["kind"] in CUSTOM_KINDS:
                        continue
                    with self.subTest(values=name, kind=doc["kind"], version=version):
                        kubernetes_validate.validate(doc, version, strict=True)

    def test_the_rendered_config_is_accepted_by_daybook(self):
        with tempfile.TemporaryDirectory() as tmp:
            sets = [(v.name, render(CHART, "-f", str(v))) for v in ci_values()]
            sets.append(("host-chart", render(host_chart_dir(tmp))))
            for name, docs in sets:
                with self.subTest(values=name):
                    config = daybook_config(docs)
                    # --check-config reads the files the config names: the mounted Secrets'
                    # files are stood in for by real ones here.
                    config = with_stand_in_files(config, Path(tmp))
                    path = Path(tmp) / f"{name}.toml"
                    path.write_text(config)
                    # The pod's environment too: the Redis URL comes from a Secret.
                    env = dict(os.environ)
                    for deployment in by_kind(docs, "Deployment"):
                        for e in daybook_container(deployment["spec"]["template"]["spec"]).get("env", []):
                            if e["name"] == "DAYBOOK_REDIS_URL":
                                tls = "redis_ca_file" in tomllib.loads(config)["server"]
                                env[e["name"]] = ("rediss" if tls else "redis") + "://redis.example:6379"
                            elif "value" in e and e["name"].startswith("DAYBOOK_"):
                                env[e["name"]] = e["value"]
                    run = subprocess.run(
                        [DAYBOOK, "serve", "--check-config", "--config", str(path)],
                        capture_output=True,
                        text=True,
                        env=env,
                    )
                    self.assertEqual(run.returncode, 0, f"{config}\n{run.stdout}{run.stderr}")


def with_stand_in_files(config, tmp):
    """The config with each file it names (credentials, certificates, keys) replaced by a
    valid one in `tmp`: a credential made by `daybook token new`, a self-signed
    certificate and its key made by openssl."""
    server = tomllib.loads(config).get("server", {})
    cert, key = tmp / "stand-in.crt", tmp / "stand-in.key"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=daybook", "-days", "2"],
                       check=True, capture_output=True)
        token = subprocess.run([DAYBOOK, "token", "new", "--id", "ci"], check=True, capture_output=True, text=True)
        (tmp / "stand-in-credentials.toml").write_text(token.stdout)
    stand_ins = {"auth_file": tmp / "stand-in-credentials.toml", "tls_cert": cert, "tls_key": key,
                 "tls_client_ca": cert, "redis_ca_file": cert, "redis_client_cert": cert, "redis_client_key": key}
    for setting, stand_in in stand_ins.items():
        if setting in server:
            config = config.replace(f'"{server[setting]}"', f'"{stand_in}"')
    # The sinks' token and secret files, from their mounted Secret.
    secret = tmp / "stand-in-secret"
    secret.write_text("s3cret\n")
    for sink in tomllib.loads(config).get("sink", []):
        for setting in ("token_file", "secret_file"):
            if setting in sink:
                config = config.replace(f'"{sink[setting]}"', f'"{secret}"')
    return config


def daybook_container(spec):
    """The daybook container of a pod spec: a sidecar or the main container."""
    for c in spec.get("initContainers", []) + spec["containers"]:
        if c["name"] == "daybook":
            return c
    raise AssertionError("no daybook container")


class Sidecar(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with tempfile.TemporaryDirectory() as tmp:
            cls.docs = render(host_chart_dir(tmp))
        cls.pod = one(cls.docs, "Deployment")["spec"]["template"]["spec"]

    def test_renders_as_a_native_sidecar(self):
        init = self.pod["initContainers"]
        self.assertEqual([c["name"] for c in init], ["daybook"])
        self.assertEqual(init[0]["restartPolicy"], "Always")
        self.assertNotIn("daybook", [c["name"] for c in self.pod["containers"]])

    def test_probes_are_grpc_on_the_health_port(self):
        sidecar = self.pod["initContainers"][0]
        health = {p["name"]: p["containerPort"] for p in sidecar["ports"]}["health"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            service = {"service": "liveness"} if probe == "livenessProbe" else {}
            self.assertEqual(sidecar[probe]["grpc"], {"port": health, **service}, probe)
            self.assertNotIn("httpGet", sidecar[probe])
        config = tomllib.loads(daybook_config(self.docs))
        self.assertEqual(config["server"]["health_listen"], f"0.0.0.0:{health}")

    def test_the_socket_volume_is_shared_with_the_app(self):
        sidecar = self.pod["initContainers"][0]
        app = self.pod["containers"][0]
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        self.assertIn("emptyDir", volumes["daybook-socket"])
        mounts = lambda c: {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        self.assertEqual(mounts(sidecar)["daybook-socket"], mounts(app)["daybook-socket"])
        config = tomllib.loads(daybook_config(self.docs))["server"]
        socket_dir = mounts(app)["daybook-socket"]
        self.assertEqual(os.path.dirname(config["uds"]), socket_dir)
        env = {e["name"]: e.get("value") for e in app["env"]}
        self.assertEqual(env["DAYBOOK_ADDR"], f"unix:{config['uds']}")
        # The API is on the socket only; the app reaches it through the pod's group.
        self.assertEqual(config["listen"], "off")
        self.assertEqual(config["uds_mode"], "0660")
        self.assertEqual(self.pod["securityContext"]["fsGroup"], sidecar["securityContext"]["runAsGroup"])

    def test_the_sidecar_reads_the_configmap_this_chart_renders(self):
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        self.assertEqual(volumes["daybook-config"]["configMap"]["name"], one(self.docs, "ConfigMap")["metadata"]["name"])

    def test_sidecar_mode_renders_no_workload_of_its_own(self):
        kinds = sorted(d["kind"] for d in self.docs)
        self.assertEqual(kinds, ["ConfigMap", "Deployment"], "the host's Deployment and daybook's ConfigMap")
        self.assertEqual(by_kind(render(CHART, "--set", "mode=sidecar"), "Deployment"), [])


class Standalone(unittest.TestCase):
    def test_a_locked_down_deployment_and_service(self):
        docs = render(CHART, *WITH_AUTH)
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        c = daybook_container(pod)
        sc = c["securityContext"]
        self.assertTrue(sc["runAsNonRoot"])
        self.assertFalse(sc["allowPrivilegeEscalation"])
        self.assertTrue(sc["readOnlyRootFilesystem"])
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertEqual(sc["seccompProfile"]["type"], "RuntimeDefault")
        self.assertFalse(pod["automountServiceAccountToken"])
        self.assertIn("limits", c["resources"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertIn("grpc", c[probe])
        service = one(docs, "Service")
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        self.assertEqual(ports["grpc"]["appProtocol"], "kubernetes.io/h2c")
        self.assertEqual(service["spec"]["selector"], one(docs, "Deployment")["spec"]["selector"]["matchLabels"])
        # Opt-in resources stay out by default.
        for kind in ("PodDisruptionBudget", "ServiceMonitor", "PersistentVolumeClaim"):
            self.assertEqual(by_kind(docs, kind), [], kind)

    def test_production_values_opt_in_a_servicemonitor_and_a_kept_volume(self):
        docs = render(CHART, "-f", str(CHART / "ci" / "production-values.yaml"))
        deployment = one(docs, "Deployment")
        self.assertEqual(deployment["spec"]["strategy"]["type"], "Recreate")
        pvc = one(docs, "PersistentVolumeClaim")
        self.assertEqual(pvc["metadata"]["annotations"]["helm.sh/resource-policy"], "keep")
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        self.assertEqual(volumes["daybook-data"]["persistentVolumeClaim"]["claimName"], pvc["metadata"]["name"])
        # One replica: its budget would block every drain, so none is rendered.
        self.assertEqual(by_kind(docs, "PodDisruptionBudget"), [])
        redis = render(CHART, "-f", str(CHART / "ci" / "redis-values.yaml"))
        pdb = one(redis, "PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["minAvailable"], 2)
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], one(redis, "Deployment")["spec"]["selector"]["matchLabels"])
        monitor = one(docs, "ServiceMonitor")
        self.assertEqual(monitor["apiVersion"], "monitoring.coreos.com/v1")
        service_ports = [p["name"] for p in one(docs, "Service")["spec"]["ports"]]
        self.assertEqual(monitor["spec"]["endpoints"][0]["port"], "admin")
        self.assertIn("admin", service_ports)
        self.assertEqual(monitor["spec"]["endpoints"][0]["path"], "/metrics")
        self.assertEqual(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack")
        image = daybook_container(deployment["spec"]["template"]["spec"])["image"]
        self.assertRegex(image, r"@sha256:[0-9a-f]{64}$")
        config = tomllib.loads(daybook_config(docs))
        self.assertEqual(config["server"]["durability"], "fsync")

    def test_server_config_changes_roll_the_pods_and_tenant_edits_do_not(self):
        def checksum(*args):
            docs = render(CHART, *WITH_AUTH, *args)
            return one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/server-config"]

        base = checksum()
        self.assertNotEqual(base, checksum("--set", "config.durability=fsync"))
        self.assertEqual(base, checksum("--set", "tenants[0].id=acme", "--set", "tenants[0].time_zone=UTC"))


class Refusals(unittest.TestCase):
    def refused(self, *args):
        run = helm("template", "rel", str(CHART), *args, check=False)
        self.assertNotEqual(run.returncode, 0, f"accepted: {args}")
        return run.stderr

    def test_the_schema_refuses_bad_values(self):
        self.assertIn("mode", self.refused("--set", "mode=daemon"))
        self.assertIn("runAsNonRoot", self.refused("--set", "securityContext.runAsNonRoot=false"))
        self.assertIn("durability", self.refused("--set", "config.durability=sometimes"))
        self.assertIn("otel", self.refused("--set", "otel.endpoint=https://collector:4317"))
        self.assertIn("colour", self.refused("--set", "colour=blue"))

    def test_the_schema_takes_exactly_the_durations_daybook_takes(self):
        """Each duration value against both judges: helm's schema and daybook's
        `serve --check-config`. A value the schema lets through and daybook refuses would
        crash-loop the pod (issue 17: `redis.timeout: PT50MS`)."""
        general = ["PT1S", "PT0.5S", "PT50MS", "PT1H1H", "PT5M1H", "P1D1D", "P1D", "PT", "P", "PT0S",
                   "P1W2DT3H4M5.5S", "PT10M", "P1M", "P1Y", "PT1.S", "PT.5S", "PT0.0000000001S", "P0D",
                   "PT0.999999999S", "PT1M", "P2W", "PT1H30M", "1S", "pt1s", "PT-1S"]
        timeouts = ["PT0.05S", "PT50MS", "PT0.001S", "PT0.0009S", "PT0.0015S", "PT10S", "PT10.5S", "PT11S",
                    "PT1S", "PT9.999999999S", "PT0S", "PT.05S", "PT010S", "PT0.1S", "PT0M1S", "P0DT0.05S",
                    "PT0H0M10S", "PT1M", "PT0M0.0001S", "P0W0DT0H0M2S"]
        keys = [
            ("config.gracePeriod", "DAYBOOK_GRACE_PERIOD", general),
            ("config.deadlineCeiling", "DAYBOOK_DEADLINE_CEILING", general),
            ("config.snapshotInterval", "DAYBOOK_SNAPSHOT_INTERVAL", general),
            ("otel.interval", "DAYBOOK_OTLP_INTERVAL", general),
            ("redis.timeout", "DAYBOOK_REDIS_TIMEOUT", timeouts),
        ]
        for value_key, env_key, candidates in keys:
            for value in candidates:
                with self.subTest(key=value_key, value=value):
                    chart = helm("template", "rel", str(CHART), *WITH_AUTH, "--set-string", f"{value_key}={value}",
                                 check=False).returncode == 0
                    env = dict(os.environ, **{env_key: value, "DAYBOOK_REDIS_URL": "redis://redis.example:6379"})
                    daybook = subprocess.run([DAYBOOK, "serve", "--check-config"], capture_output=True,
                                             env=env).returncode == 0
                    self.assertEqual(chart, daybook, f"schema {'accepts' if chart else 'refuses'} {value_key}={value}")

    def test_replicas_without_a_shared_meter_are_refused(self):
        self.assertIn("meter alone", self.refused(*WITH_AUTH, "--set", "replicaCount=2"))

    def test_replicas_sharing_one_volume_are_refused(self):
        args = [*WITH_AUTH, "--set", "replicaCount=2", "--set", "redis.existingSecret=r", "--set", "persistence.enabled=true"]
        self.assertIn("several replicas' journals", self.refused(*args))

    def test_redis_mode_reads_the_url_from_the_secret_and_runs_replicas(self):
        docs = render(CHART, "-f", str(CHART / "ci" / "redis-values.yaml"))
        deployment = by_kind(docs, "Deployment")[0]
        self.assertEqual(deployment["spec"]["replicas"], 3)
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        self.assertEqual(env["DAYBOOK_REDIS_URL"]["valueFrom"]["secretKeyRef"], {"name": "daybook-redis", "key": "url"})
        self.assertEqual(env["DAYBOOK_REDIS_TIMEOUT"]["value"], "PT0.05S")
        for doc in docs:
            self.assertNotIn("redis://", yaml.safe_dump(doc), "the URL never appears in a manifest")
        self.assertIn("timeout", self.refused("--set", "redis.timeout=fast"))

    def test_standalone_without_credentials_is_refused_unless_insecure(self):
        self.assertIn("auth.existingSecret", self.refused())
        docs = render(CHART, "--set", "auth.insecure=true")
        config = tomllib.loads(daybook_config(docs))["server"]
        self.assertIs(config["insecure"], True)
        self.assertNotIn("auth_file", config)
        self.assertIn("ca.crt", self.refused(*WITH_AUTH, "--set", "tls.clientAuth=required"))
        self.assertIn("clientAuth", self.refused(*WITH_AUTH, "--set", "tls.existingSecret=t", "--set", "tls.clientAuth=maybe"))


class Security(unittest.TestCase):
    """Credentials, TLS and Redis TLS come from Secrets, mounted whole (never subPath: a
    subPath mount is not updated when the Secret is) so that daybook reloads them."""

    def mounts_and_volumes(self, docs):
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        c = daybook_container(pod)
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for m in mounts.values():
            self.assertNotIn("subPath", m)
        return mounts, volumes

    def test_production_values_mount_credentials_and_certificates(self):
        docs = render(CHART, "-f", str(CHART / "ci" / "production-values.yaml"))
        config = tomllib.loads(daybook_config(docs))["server"]
        mounts, volumes = self.mounts_and_volumes(docs)
        self.assertEqual(config["auth_file"], mounts["daybook-auth"]["mountPath"] + "/credentials.toml")
        self.assertEqual(volumes["daybook-auth"]["secret"]["secretName"], "daybook-credentials")
        tls_dir = mounts["daybook-tls"]["mountPath"]
        self.assertEqual(
            (config["tls_cert"], config["tls_key"], config["tls_client_ca"]),
            (f"{tls_dir}/tls.crt", f"{tls_dir}/tls.key", f"{tls_dir}/ca.crt"),
        )
        self.assertEqual(config["tls_client_auth"], "optional")
        self.assertEqual(volumes["daybook-tls"]["secret"]["secretName"], "daybook-tls")
        self.assertTrue(all(m["readOnly"] for n, m in mounts.items() if n != "daybook-data"))
        self.assertNotIn("insecure", config)
        # The sinks' files are in the mounted Secret.
        sinks = tomllib.loads(daybook_config(docs))["sink"]
        self.assertEqual(volumes["daybook-sinks"]["secret"]["secretName"], "daybook-sinks")
        self.assertEqual(
            [s.get("token_file", s.get("secret_file")) for s in sinks],
            [mounts["daybook-sinks"]["mountPath"] + f for f in ("/openmeter-token", "/acme-webhook-secret")],
        )
        self.assertEqual(sinks[1]["tenants"], ["acme"])

    def test_redis_tls_files_come_from_their_secret(self):
        docs = render(CHART, "-f", str(CHART / "ci" / "redis-values.yaml"))
        config = tomllib.loads(daybook_config(docs))["server"]
        mounts, volumes = self.mounts_and_volumes(docs)
        redis_dir = mounts["daybook-redis-tls"]["mountPath"]
        self.assertEqual(config["redis_ca_file"], f"{redis_dir}/ca.crt")
        self.assertEqual(config["redis_client_cert"], f"{redis_dir}/tls.crt")
        self.assertEqual(volumes["daybook-redis-tls"]["secret"]["secretName"], "daybook-redis-tls")
        self.assertEqual(config["memory_ceiling"], "400MiB")
        self.assertEqual(config["redis_tenant_log"], "every_tenant")
        # Tenant logs live in Redis: without it the setting is refused, as is a bad word.
        embedded = helm("template", "rel", str(CHART), *WITH_AUTH, "--set", "redis.tenantLog=every_tenant", check=False)
        self.assertNotEqual(embedded.returncode, 0)
        self.assertIn("tenantLog", embedded.stderr)
        bad = helm("template", "rel", str(CHART), "-f", str(CHART / "ci" / "redis-values.yaml"), "--set", "redis.tenantLog=always", check=False)
        self.assertNotEqual(bad.returncode, 0)
        # Only Redis mode can forget entries: without Redis the ceiling is refused.
        embedded = helm("template", "rel", str(CHART), *WITH_AUTH, "--set", "redis.memoryCeiling=400MiB", check=False)
        self.assertNotEqual(embedded.returncode, 0)
        self.assertIn("memoryCeiling", embedded.stderr)
        no_client = render(CHART, "-f", str(CHART / "ci" / "redis-values.yaml"), "--set", "redis.tls.clientCertificate=false")
        config = tomllib.loads(daybook_config(no_client))["server"]
        self.assertNotIn("redis_client_cert", config)

    def test_a_sidecar_needs_no_credentials_and_mounts_them_when_given(self):
        with tempfile.TemporaryDirectory() as tmp:
            host = host_chart_dir(tmp)
            docs = render(host, "--set", "daybook.auth.existingSecret=daybook-credentials")
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(volumes["daybook-auth"]["secret"]["secretName"], "daybook-credentials")
        config = tomllib.loads(daybook_config(docs))["server"]
        self.assertEqual(config["listen"], "off")
        self.assertIn("auth_file", config)


if __name__ == "__main__":
    unittest.main()


class Operations(unittest.TestCase):
    """What an operator deploys and watches: probes, drains, policies, alerts, dashboard,
    and the README's install command as written."""

    def test_the_readme_install_command_works_as_written(self):
        readme = (CHART / "README.md").read_text()
        commands = re.findall(r"^(helm install .*?)(?<!\\)$", readme.replace("\\\n", " "), re.M)
        self.assertTrue(commands, "the chart README shows helm install")
        for command in commands:
            args = shlex.split(command)[2:]
            args = [str(CHART) if a == "./helm/daybook" else a for a in args if a != "--create-namespace"]
            with self.subTest(command=command):
                helm("template", *args)

    def test_liveness_asks_for_the_process_and_readiness_for_the_service(self):
        container = daybook_container(one(render(CHART, *WITH_AUTH), "Deployment")["spec"]["template"]["spec"])
        self.assertEqual(container["livenessProbe"]["grpc"].get("service"), "liveness")
        self.assertNotIn("service", container["readinessProbe"]["grpc"])

    def test_a_prestop_sleep_from_kubernetes_1_30(self):
        def lifecycle(version):
            docs = render(CHART, *WITH_AUTH, "--kube-version", version)
            return daybook_container(one(docs, "Deployment")["spec"]["template"]["spec"]).get("lifecycle")
        self.assertEqual(lifecycle("1.33.0"), {"preStop": {"sleep": {"seconds": 5}}})
        self.assertIsNone(lifecycle("1.29.0"), "no sleep action before 1.30")

    def test_a_disruption_budget_never_blocks_a_drain(self):
        one_replica = render(CHART, *WITH_AUTH, "--set", "podDisruptionBudget.enabled=true")
        self.assertEqual(by_kind(one_replica, "PodDisruptionBudget"), [], "no budget on a single replica")
        three = ("--set", "replicaCount=3", "--set", "redis.existingSecret=r", "--set", "podDisruptionBudget.enabled=true")
        pdb = one(render(CHART, *WITH_AUTH, *three), "PodDisruptionBudget")
        self.assertEqual(pdb["spec"].get("maxUnavailable"), 1)
        run = helm("template", "rel", str(CHART), *WITH_AUTH, *three, "--set", "podDisruptionBudget.minAvailable=3",
                   check=False)
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("node drains block", run.stderr)

    def test_alerts_and_dashboard_are_opt_in_and_well_formed(self):
        plain = render(CHART, *WITH_AUTH)
        self.assertEqual([d["kind"] for d in plain if d["kind"] in ("PrometheusRule", "NetworkPolicy")], [])
        docs = render(CHART, "-f", str(CHART / "ci" / "redis-values.yaml"))
        rules = one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
        self.assertEqual({r["alert"] for r in rules},
                         {"DaybookRedisDegraded", "DaybookEventsPendingForRedis", "DaybookNotReady", "DaybookDiskFilling"})
        for rule in rules:
            self.assertTrue(rule["expr"] and rule["for"] and rule["annotations"]["description"])
        # Every metric an alert or a panel reads is one daybook exports (README's table).
        dashboard_maps = [d for d in by_kind(docs, "ConfigMap") if "daybook.json" in d.get("data", {})]
        self.assertEqual(len(dashboard_maps), 1)
        self.assertEqual(dashboard_maps[0]["metadata"]["labels"].get("grafana_dashboard"), "1")
        dashboard = json.loads(dashboard_maps[0]["data"]["daybook.json"])
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]] + [r["expr"] for r in rules]
        exported = set(re.findall(r"`([a-z_.]+)`", (ROOT / "README.md").read_text()))
        for expr in exprs:
            for metric in re.findall(r"\b((?:daybook|rpc|process)_[a-z_]+)", expr):
                base = re.sub(r"_(total|bucket|count|sum|seconds|bytes)$", "", re.sub(r"_(seconds|bytes)_(bucket|count|sum|total)$", "", metric))
                self.assertTrue(any(e.replace(".", "_") == base for e in exported), f"{metric} in {expr}")
        policy = one(docs, "NetworkPolicy")
        self.assertEqual(policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"],
                         {"kubernetes.io/metadata.name": "chat"})

    def test_a_statefulset_gives_each_replica_its_own_journal_volume(self):
        docs = render(CHART, "-f", str(CHART / "ci" / "statefulset-values.yaml"))
        self.assertEqual(by_kind(docs, "Deployment") + by_kind(docs, "PersistentVolumeClaim"), [])
        statefulset = one(docs, "StatefulSet")
        claims = statefulset["spec"]["volumeClaimTemplates"]
        self.assertEqual([c["metadata"]["name"] for c in claims], ["daybook-data"])
        self.assertEqual(claims[0]["spec"]["resources"]["requests"]["storage"], "20Gi")
        pod = statefulset["spec"]["template"]["spec"]
        self.assertNotIn("daybook-data", [v["name"] for v in pod["volumes"]], "the claim template provides it")
        mounts = {m["name"]: m["mountPath"] for m in daybook_container(pod)["volumeMounts"]}
        self.assertEqual(mounts["daybook-data"], "/var/lib/daybook")
        self.assertEqual(statefulset["spec"]["persistentVolumeClaimRetentionPolicy"],
                         {"whenDeleted": "Retain", "whenScaled": "Retain"})
        # Several replicas with persistence need it: a Deployment would share one volume.
        run = helm("template", "rel", str(CHART), "-f", str(CHART / "ci" / "statefulset-values.yaml"),
                   "--set", "workload=Deployment", check=False)
        self.assertIn("workload=StatefulSet", run.stderr)
