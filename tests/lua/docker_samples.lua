-- Recorded `docker build` failure output for tests/lua/docker_test.lua (loaded by it; not a
-- test file). classic_*: docker CLI 28.2 without buildx against Debian's dockerd 20.10, the
-- legacy builder. buildkit_*: Debian's docker.io 20.10 CLI, DOCKER_BUILDKIT=1 --progress=plain.
-- buildx_*: written after docker buildx 0.1x output (docker 24+), which this machine lacks.
-- <ESC> and <CR> stand for the escape and carriage-return bytes docker wrote.
local S = {}

S.classic_run_stdout = [==[
Sending build context to Docker daemon  3.584kB<CR><CR>
Step 1/4 : FROM hoist-test/busybox:latest
 ---> 8aa34b750ed4
Step 2/4 : RUN echo step-two-ok
 ---> Running in c6378e0a28d4
step-two-ok
Removing intermediate container c6378e0a28d4
 ---> f6e4149f080b
Step 3/4 : RUN echo about to fail && ls /nope && echo never
 ---> Running in 1694d97a3272
about to fail
<ESC>[91mls: /nope: No such file or directory
<ESC>[0m]==]

S.classic_run_stderr = [==[
DEPRECATED: The legacy builder is deprecated and will be removed in a future release.
            Install the buildx component to build images with BuildKit:
            https://docs.docker.com/go/buildx/

The command '/bin/sh -c echo about to fail && ls /nope && echo never' returned a non-zero code: 1
]==]

S.classic_copy_stdout = [==[
Sending build context to Docker daemon  6.144kB<CR><CR>
Step 1/2 : FROM hoist-test/busybox:latest
 ---> 8aa34b750ed4
Step 2/2 : COPY missing.txt /x
]==]

S.classic_copy_stderr = [==[
DEPRECATED: The legacy builder is deprecated and will be removed in a future release.
            Install the buildx component to build images with BuildKit:
            https://docs.docker.com/go/buildx/

COPY failed: file not found in build context or excluded by .dockerignore: stat missing.txt: file does not exist
]==]

S.classic_parse_stdout = [==[
Sending build context to Docker daemon  3.584kB<CR><CR>
]==]

S.classic_parse_stderr = [==[
DEPRECATED: The legacy builder is deprecated and will be removed in a future release.
            Install the buildx component to build images with BuildKit:
            https://docs.docker.com/go/buildx/

Error response from daemon: dockerfile parse error line 2: unknown instruction: FOO
]==]

S.buildkit_run_stderr = [==[
#1 [internal] load build definition from Dockerfile
#1 sha256:e2f9276c71a699dc2e48418f35ee5e5d4579a251cd70f8f65f278b72506ba45e
#1 transferring dockerfile: 153B done
#1 DONE 0.1s

#2 [internal] load .dockerignore
#2 sha256:54d7d0dfb8d812410eec85b010cd7ce9df7153f6ddb77128edae0164e698a3b9
#2 transferring context: 2B done
#2 DONE 0.1s

#3 [internal] load metadata for docker.io/hoist-test/busybox:latest
#3 sha256:ab28c546546a61e421b54310e2234205af9a2af889f5bc18d4747991ed01e674
#3 DONE 0.0s

#4 [1/4] FROM docker.io/hoist-test/busybox:latest
#4 sha256:f774070c739e1b9480bcb723ab42ffa0f53ee55740d38d6b849b98edfee74962
#4 DONE 0.1s

#5 [2/4] RUN echo step-two-ok
#5 sha256:6e332003864761b9f09a42f6f0de8e961d70689c47fd6427f5a15e277cfe9880
#5 1.330 step-two-ok
#5 DONE 1.4s

#6 [3/4] RUN echo about to fail && ls /nope && echo never
#6 sha256:3876e486531594cee6233dc633f008cc11dcf3ef1fb2c627ff1db156166bc68c
#6 1.232 about to fail
#6 1.256 ls: /nope: No such file or directory
#6 ERROR: executor failed running [/bin/sh -c echo about to fail && ls /nope && echo never]: exit code: 1
------
 > [3/4] RUN echo about to fail && ls /nope && echo never:
------
executor failed running [/bin/sh -c echo about to fail && ls /nope && echo never]: exit code: 1
]==]

S.buildkit_copy_stderr = [==[
#1 [internal] load build definition from Dockerfile
#1 sha256:5ec30279a38eab4548806af36277dc81917321455d2dc7a2d40ea2d4d9507b52
#1 transferring dockerfile: 88B done
#1 DONE 0.0s

#2 [internal] load .dockerignore
#2 sha256:60f0350df175e3136486354f491b633ed395d1dde11d4c36d400517f329c5600
#2 transferring context: 2B done
#2 DONE 0.0s

#3 [internal] load metadata for docker.io/hoist-test/busybox:latest
#3 sha256:ab28c546546a61e421b54310e2234205af9a2af889f5bc18d4747991ed01e674
#3 DONE 0.0s

#4 [1/2] FROM docker.io/hoist-test/busybox:latest
#4 sha256:f774070c739e1b9480bcb723ab42ffa0f53ee55740d38d6b849b98edfee74962
#4 CACHED

#5 [internal] load build context
#5 sha256:97ddce6a51b7fe62b54575dc77df07b920b94f2ba74e627096a48a4e4c4f42d9
#5 transferring context: 2B done
#5 DONE 0.0s

#6 [2/2] COPY missing.txt /x
#6 sha256:1f2c5286c5b5df2e7fe3095118f666be33e7297838e40ba2f510b43a78af893d
#6 ERROR: "/missing.txt" not found: not found
------
 > [2/2] COPY missing.txt /x:
------
failed to compute cache key: "/missing.txt" not found: not found
]==]

S.buildkit_parse_stderr = [==[
#1 [internal] load build definition from Dockerfile
#1 sha256:950e40634d1024fd95f9ee0f721c2240de6dbcb62ce6d4c7a3abc2fa9c57c77e
#1 transferring dockerfile: 76B 0.0s done
#1 DONE 0.0s

#2 [internal] load .dockerignore
#2 sha256:e5e6d99e8cbbb560238366fd41b71406ecf4b394312688815081beaaef486d49
#2 transferring context: 2B done
#2 DONE 0.0s
failed to solve with frontend dockerfile.v0: failed to create LLB definition: dockerfile parse error line 2: unknown instruction: FOO
]==]
S.buildx_run_stderr = [==[
#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 153B done
#1 DONE 0.0s

#2 [internal] load metadata for docker.io/hoist-test/busybox:latest
#2 DONE 0.0s

#3 [internal] load .dockerignore
#3 transferring context: 2B done
#3 DONE 0.0s

#4 [builder 1/4] FROM docker.io/hoist-test/busybox:latest
#4 CACHED

#5 [builder 2/4] RUN echo step-two-ok
#5 0.201 step-two-ok
#5 DONE 0.3s

#6 [builder 3/4] RUN echo about to fail && ls /nope && echo never
#6 0.215 about to fail
#6 0.217 ls: /nope: No such file or directory
#6 ERROR: process "/bin/sh -c echo about to fail && ls /nope && echo never" did not complete successfully: exit code: 1
------
 > [builder 3/4] RUN echo about to fail && ls /nope && echo never:
0.215 about to fail
0.217 ls: /nope: No such file or directory
------
Dockerfile:3
--------------------
   1 |     FROM hoist-test/busybox:latest AS builder
   2 |     RUN echo step-two-ok
   3 | >>> RUN echo about to fail && ls /nope && echo never
   4 |     RUN echo after
   5 |
--------------------
ERROR: failed to solve: process "/bin/sh -c echo about to fail && ls /nope && echo never" did not complete successfully: exit code: 1
]==]

S.buildx_parse_stderr = [==[
#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 76B done
#1 DONE 0.0s
Dockerfile:2
--------------------
   1 |     FROM hoist-test/busybox:latest
   2 | >>> FOO bar
   3 |
--------------------
ERROR: failed to solve: dockerfile parse error on line 2: unknown instruction: FOO
]==]

-- docker CLI 28.2 refusing a command line (exit code 125): the line that says why comes
-- before a blank line and a pointer to --help.
S.run_invalid_reference_stderr = [==[
docker: invalid reference format: repository name (library/Bad) must be lowercase

Run 'docker run --help' for more information
]==]

S.run_manifest_unknown_stderr = [==[
Unable to find image '127.0.0.1:5000/nope/none:v9' locally
docker: Error response from daemon: manifest for 127.0.0.1:5000/nope/none:v9 not found: manifest unknown: manifest unknown

Run 'docker run --help' for more information
]==]

S.run_bad_port_stderr = [==[
docker: invalid containerPort: notaport

Run 'docker run --help' for more information
]==]

S.build_bad_tag_stderr = [==[
invalid argument "Bad:Ref" for "-t, --tag" flag: invalid reference format: repository name (library/Bad) must be lowercase

Usage:  docker build [OPTIONS] PATH | URL | -

Run 'docker build --help' for more information
]==]

for k, v in pairs(S) do S[k] = v:gsub("<ESC>", "\27"):gsub("<CR>", "\r") end
return S
