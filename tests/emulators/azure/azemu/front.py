"""The front end the emulator itself plays behind the proxy, on 127.0.0.1:5015 (plain HTTP; the
proxy terminates TLS for https:// names): the App Service SCM site (Kudu:
`<app>.scm.azurewebsites.net`), the error pages of sites that are stopped or failed to start,
and the Container Apps log stream (`<region>.azurecontainerapps.dev`). Routes are chosen by the
Host header: each provider adds fn(host, handler) to state.front_routes, returning True when it
answered."""

from .httpbase import Handler, serve


class FrontHandler(Handler):
    server_version = "hoist-azure-emulator-front/1"

    def route(self):
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        for fn in list(self.state.front_routes):
            if fn(host, self):
                return
        self.send(404, "hoist azure emulator: nothing is served on %s\n" % host, ctype="text/plain")


def start(state, port, tls):
    return serve(state, "front", port, FrontHandler)


def resolver(state):
    """Proxy resolver for hosts the front end serves: fn(host) -> True."""
    def resolve(host, port, match):
        if not match(host):
            return None
        if port == 443:
            return (state_port(state), True)
        if port == 80:
            return state_port(state)
        return None
    return resolve


def state_port(state):
    from .state import PORTS
    return PORTS["front"]
