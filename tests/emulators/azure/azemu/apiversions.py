"""The api-versions ARM accepts for each emulated provider: every stable and preview version
published in the public REST API specs (Azure/azure-rest-api-specs,
specification/<service>/resource-manager/<Namespace>/.../stable|preview/<version>/, as listed by
each service's readme.md tags and version folders; read 2026-12). A current SDK sends its
newest version (`@azure/arm-appservice` 19: Microsoft.Web 2025-05-01, `@azure/arm-appcontainers`
4: Microsoft.App 2026-07-01): a version missing here is a refusal no real client would see.

Real ARM keeps a list per resource type; the emulator accepts a provider's versions for all its
types (a version that introduced a type before the emulator's oldest one is still listed).
Compact: one string of stable versions and one of previews per provider.
"""

TABLE = {
    "Microsoft.Resources": (
        "2015-11-01 2016-02-01 2016-06-01 2016-07-01 2016-09-01 2017-05-10 2018-02-01 2018-05-01 "
        "2019-03-01 2019-05-01 2019-05-10 2019-07-01 2019-08-01 2019-10-01 2020-06-01 2020-08-01 "
        "2020-10-01 2021-01-01 2021-04-01 2022-01-01 2022-09-01 2022-12-01 2023-07-01 2024-03-01 "
        "2024-07-01 2024-11-01 2025-01-01 2025-03-01 2025-04-01",
        "2025-08-01-preview"),
    # Microsoft.Resources/subscriptions (specification/subscription): its own line of versions
    "Microsoft.Resources/subscriptions": (
        "2015-11-01 2016-06-01 2018-06-01 2019-06-01 2019-11-01 2020-01-01 2021-01-01 2022-12-01",
        "2014-04-01-preview"),
    "Microsoft.Authorization": (
        "2015-07-01 2022-04-01",
        "2017-10-01-preview 2018-01-01-preview 2018-09-01-preview 2020-03-01-preview "
        "2020-04-01-preview 2020-08-01-preview 2020-10-01-preview 2022-01-01-preview"),
    # specification/msi: userAssignedIdentities and their federatedIdentityCredentials
    "Microsoft.ManagedIdentity": (
        "2018-11-30 2023-01-31 2024-11-30",
        "2015-08-31-preview 2021-09-30-preview 2022-01-31-preview 2023-07-31-preview 2025-01-31-preview"),
    # specification/machinelearningservices
    "Microsoft.MachineLearningServices": (
    "2018-11-19 2019-05-01 2019-06-01 2019-11-01 2020-01-01 2020-03-01 2020-04-01 2020-06-01 2020-08-01 "
    "2021-01-01 2021-04-01 2021-07-01 2022-05-01 2022-10-01 2023-04-01 2023-10-01 2024-04-01 2024-10-01 "
    "2025-04-01 2025-06-01 2025-09-01",
    "2021-03-01-preview 2022-02-01-preview 2022-06-01-preview 2022-10-01-preview 2022-12-01-preview "
    "2023-02-01-preview 2023-04-01-preview 2023-06-01-preview 2023-08-01-preview 2024-01-01-preview "
    "2024-04-01-preview 2024-07-01-preview 2024-10-01-preview 2025-01-01-preview 2025-04-01-preview "
    "2025-07-01-preview 2025-10-01-preview"),
    "Microsoft.ContainerRegistry": (
        "2017-03-01 2017-10-01 2019-05-01 2021-09-01 2022-12-01 2023-07-01 2025-04-01 2025-11-01",
        "2019-05-01-preview 2019-12-01-preview 2020-11-01-preview 2021-06-01-preview "
        "2021-08-01-preview 2021-12-01-preview 2022-02-01-preview 2023-01-01-preview "
        "2023-06-01-preview 2023-08-01-preview 2023-11-01-preview 2024-11-01-preview "
        "2025-03-01-preview 2025-05-01-preview"),
    "Microsoft.ContainerInstance": (
        "2018-04-01 2018-06-01 2018-09-01 2018-10-01 2019-12-01 2020-11-01 2021-03-01 2021-07-01 "
        "2021-09-01 2021-10-01 2022-09-01 2023-05-01 2025-09-01 2026-05-01",
        "2017-08-01-preview 2017-10-01-preview 2017-12-01-preview 2018-02-01-preview "
        "2022-10-01-preview 2023-02-01-preview 2024-05-01-preview 2024-09-01-preview "
        "2024-10-01-preview 2024-11-01-preview 2026-06-01-preview"),
    "Microsoft.Web": (
        "2015-08-01 2016-03-01 2016-08-01 2016-09-01 2018-02-01 2018-11-01 2019-08-01 2020-06-01 "
        "2020-09-01 2020-10-01 2020-12-01 2021-01-01 2021-01-15 2021-02-01 2021-03-01 2022-03-01 "
        "2022-09-01 2023-01-01 2023-12-01 2024-04-01 2024-11-01 2025-03-01 2025-05-01 2026-03-15 "
        "2026-07-15 2026-09-01",
        "2015-08-01-preview 2026-03-01-preview"),
    "Microsoft.App": (
        "2022-03-01 2022-10-01 2023-05-01 2024-03-01 2025-01-01 2025-07-01 2026-01-01 2026-07-01",
        "2022-01-01-preview 2022-06-01-preview 2022-11-01-preview 2023-04-01-preview "
        "2023-05-02-preview 2023-08-01-preview 2023-11-02-preview 2024-02-02-preview "
        "2024-08-02-preview 2024-10-02-preview 2025-02-02-preview 2025-05-01-preview "
        "2025-10-02-preview 2026-03-02-preview"),
    "Microsoft.ContainerService": (
        "2017-07-01 2017-08-31 2018-03-31 2019-02-01 2019-04-01 2019-06-01 2019-08-01 2019-10-01 "
        "2019-11-01 2020-01-01 2020-02-01 2020-03-01 2020-04-01 2020-06-01 2020-07-01 2020-09-01 "
        "2020-11-01 2020-12-01 2021-02-01 2021-03-01 2021-05-01 2021-07-01 2021-08-01 2021-09-01 "
        "2021-10-01 2022-01-01 2022-02-01 2022-03-01 2022-04-01 2022-06-01 2022-07-01 2022-09-01 "
        "2022-11-01 2023-01-01 2023-02-01 2023-03-01 2023-04-01 2023-05-01 2023-06-01 2023-07-01 "
        "2023-08-01 2023-09-01 2023-10-01 2023-11-01 2024-01-01 2024-02-01 2024-05-01 2024-07-01 "
        "2024-08-01 2024-09-01 2024-10-01 2025-01-01 2025-02-01 2025-03-01 2025-04-01 2025-05-01 "
        "2025-06-01 2025-07-01 2025-08-01 2025-09-01 2025-10-01 2026-01-01 2026-02-01 2026-03-01 "
        "2026-04-01 2026-05-01",
        "2021-11-01-preview 2022-01-02-preview 2022-02-02-preview 2022-03-02-preview "
        "2022-04-02-preview 2022-05-02-preview 2022-06-02-preview 2022-07-02-preview "
        "2022-08-02-preview 2022-08-03-preview 2022-09-02-preview 2022-10-02-preview "
        "2022-11-02-preview 2023-01-02-preview 2023-02-02-preview 2023-03-02-preview "
        "2023-04-02-preview 2023-05-02-preview 2023-06-02-preview 2023-07-02-preview "
        "2023-08-02-preview 2023-09-02-preview 2023-10-02-preview 2023-11-02-preview "
        "2024-01-02-preview 2024-02-02-preview 2024-03-02-preview 2024-04-02-preview "
        "2024-05-02-preview 2024-06-02-preview 2024-07-02-preview 2024-09-02-preview "
        "2024-10-02-preview 2025-01-02-preview 2025-02-02-preview 2025-03-02-preview "
        "2025-04-02-preview 2025-05-02-preview 2025-06-02-preview 2025-07-02-preview "
        "2025-08-02-preview 2025-09-02-preview 2025-10-02-preview 2026-01-02-preview "
        "2026-02-02-preview 2026-03-02-preview 2026-04-02-preview"),
}


def of(provider):
    """The api-versions of a provider (a key of TABLE), stable and preview, as a frozenset."""
    stable, preview = TABLE[provider]
    return frozenset(stable.split() + preview.split())
