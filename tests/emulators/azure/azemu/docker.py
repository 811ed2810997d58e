"""The docker CLI, as the ACI provider uses it (subprocesses; nothing of Docker's API by hand).
Every container carries the label hoist-emulator=azure, so down.sh can remove them all."""

import json
import os
import subprocess
import tempfile

from .state import PORT_BASE

LABEL = "hoist-emulator=azure" if PORT_BASE == 5010 else "hoist-emulator=azure-%d" % PORT_BASE


def run(args, input_=None, timeout=120, env=None):
    """(returncode, stdout, stderr) of `docker ARGS`."""
    try:
        p = subprocess.run(["docker"] + args, input=input_, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return 124, "", "docker %s timed out after %ds" % (args[0], timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def pull(image, credentials):
    """Pulls IMAGE with the registry credentials [{server, username, password}] in a private
    config dir (the password goes on stdin); returns (ok, message)."""
    with tempfile.TemporaryDirectory() as cfg:
        for c in credentials:
            rc, _, err = run(["--config", cfg, "login", c["server"], "-u", c.get("username") or "",
                              "--password-stdin"], input_=(c.get("password") or "").encode(), timeout=60)
            if rc != 0:
                return False, "login to %s failed: %s" % (c["server"], last_line(err))
        rc, _, err = run(["--config", cfg, "pull", image], timeout=180)
    return rc == 0, last_line(err)


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def start(name, image, labels, ports, env, command, restart, args=None, network=None):
    """docker run -d; ports are container ports published on 127.0.0.1 with a kernel-chosen
    host port; env values go through a 0600 env file, never on the command line; `command`
    replaces the entrypoint (with its arguments), `args` only the image's CMD; `network`
    `container:<name>` joins another container's network (a pod's second container).
    Returns (ok, container id or error)."""
    with tempfile.TemporaryDirectory() as d:
        env_file = os.path.join(d, "env")
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            for k, v in env:
                f.write("%s=%s\n" % (k, str(v).replace("\n", " ")))
        run_args = ["run", "-d", "--name", name, "--label", LABEL, "--env-file", env_file]
        for k, v in labels.items():
            run_args += ["--label", "%s=%s" % (k, v)]
        if network:
            run_args += ["--network", network]
        for p in ports:
            run_args += ["-p", "127.0.0.1::%d" % p]
        if restart == "Always":
            run_args += ["--restart", "always"]
        elif restart == "OnFailure":
            run_args += ["--restart", "on-failure"]
        cmd = args
        args = run_args
        if command:
            args += ["--entrypoint", command[0], image] + list(command[1:])
        else:
            args.append(image)
            args += list(cmd or [])
        rc, out, err = run(args, timeout=120)
    return (rc == 0), (out.strip() if rc == 0 else last_line(err))


def inspect(name):
    rc, out, _ = run(["inspect", name], timeout=30)
    if rc != 0:
        return None
    try:
        return json.loads(out)[0]
    except (ValueError, IndexError):
        return None


def host_port(info, port):
    bindings = ((info or {}).get("NetworkSettings") or {}).get("Ports") or {}
    for b in bindings.get("%d/tcp" % port) or []:
        if b.get("HostIp") in ("127.0.0.1", "") and b.get("HostPort"):
            return int(b["HostPort"])
    return None


def remove(names):
    if names:
        run(["rm", "-f"] + list(names), timeout=60)


def logs(name, tail=None, timestamps=False):
    args = ["logs"]
    if tail is not None:
        args += ["--tail", str(tail)]
    if timestamps:
        args.append("--timestamps")
    rc, out, err = run(args + [name], timeout=30)
    return out + err if rc == 0 else None


def remove_labelled():
    rc, out, _ = run(["ps", "-aq", "--filter", "label=" + LABEL], timeout=30)
    if rc == 0 and out.split():
        remove(out.split())


def image_digest(image):
    """(image id, repository digest or None) of a local image."""
    rc, out, _ = run(["image", "inspect", image], timeout=30)
    if rc != 0:
        return None, None
    try:
        info = json.loads(out)[0]
    except (ValueError, IndexError):
        return None, None
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image.split("@")[0]
    digest = next((d.split("@", 1)[1] for d in info.get("RepoDigests") or []
                   if d.split("@", 1)[0] == repo), None)
    return info.get("Id"), digest


def state_of(info):
    """'running', 'restarting', 'exited' or 'absent' from a docker inspect result."""
    if info is None:
        return "absent"
    s = info.get("State") or {}
    if s.get("Restarting"):
        return "restarting"
    return "running" if s.get("Running") else "exited"


def last_exit_code(name):
    """The exit code of the container's last death, from the daemon's events (docker inspect
    shows 0 again once a restart policy has started it anew), or None."""
    import time
    rc, out, _ = run(["events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter",
                      "container=" + name, "--filter", "event=die", "--format",
                      '{{index .Actor.Attributes "exitCode"}}'], timeout=15)
    codes = [line.strip() for line in out.splitlines() if line.strip().lstrip("-").isdigit()]
    return int(codes[-1]) if rc == 0 and codes else None
