"""Resource providers of the ARM emulator. Each module has install(arm): it registers its
ResourceTypes (arm.register) and any routes of its own (arm.route). A new service (App Service,
Container Apps, AKS) is one more module in MODULES."""

import importlib

MODULES = ("resources", "authorization", "managedidentity", "containerregistry", "containerinstance", "web", "containerapps",
           "containerservice")


def install(arm):
    for name in MODULES:
        try:
            module = importlib.import_module(__name__ + "." + name)
        except ModuleNotFoundError as e:
            if e.name != __name__ + "." + name:
                raise
            continue
        module.install(arm)
    from . import resources
    resources.install_late(arm)  # the generic resource routes match last
