-- hoist.image: parse/format over the engine's reference parser (Docker's grammar).
local t = require "hoist.test"
local image = hoist.image

local D = "sha256:" .. ("ab"):rep(32)

t.cases("parse splits and normalises", {
  { "busybox", { registry = "docker.io", repository = "docker.io/library/busybox", path = "library/busybox",
                 image = "docker.io/library/busybox" } },
  { "acme/app:1.2", { registry = "docker.io", repository = "docker.io/acme/app", path = "acme/app", tag = "1.2",
                      image = "docker.io/acme/app:1.2" } },
  { "127.0.0.1:5000/team/app:v1@" .. D, { registry = "127.0.0.1:5000", repository = "127.0.0.1:5000/team/app",
      path = "team/app", tag = "v1", digest = D, image = "127.0.0.1:5000/team/app:v1@" .. D } },
  { "index.docker.io/library/redis", { registry = "docker.io", repository = "docker.io/library/redis",
      path = "library/redis", image = "docker.io/library/redis" } },
  { "localhost/app@" .. D, { registry = "localhost", repository = "localhost/app", path = "app", digest = D,
      image = "localhost/app@" .. D } },
}, function(row)
  t.eq(image.parse(row[1]), row[2])
end)

t.cases("parse rejects what docker rejects, naming the reference", {
  { ref = "Acme/App:1", pattern = "invalid image reference 'Acme/App:1': repository name must be lowercase" },
  { ref = "acme/a..b", pattern = "bad separator '..'" },
  { ref = "127.0.0.1:5000/" .. ("a"):rep(250), pattern = "longer than 255 characters" },
  { ref = "app:", pattern = "empty tag" },
  { ref = "app:-x", pattern = "bad tag" },
  { ref = "app@sha256:12", pattern = "invalid image reference 'app@sha256:12'" },
  { ref = "a b", pattern = "whitespace" },
  { ref = "", pattern = "empty reference" },
}, function(row)
  local err = t.raises(function() image.parse(row.ref) end, "invalid_argument", row.pattern)
  t.eq(err.details.reference, row.ref)
end)

t.case("parse of a non-string and valid()", function()
  t.raises(function() image.parse(nil) end, "invalid_argument", "hoist%.image%.parse: expected an image reference")
  t.eq(image.valid("busybox:1"), true)
  local ok, why = image.valid("UPPER")
  t.eq(ok, false)
  t.match(why, "lowercase")
end)

t.cases("format builds and checks", {
  { { repository = "127.0.0.1:5000/app", tag = "v2" }, "127.0.0.1:5000/app:v2" },
  { { repository = "busybox", digest = D }, "docker.io/library/busybox@" .. D },
  { { registry = "127.0.0.1:5000", path = "team/app", tag = "1" }, "127.0.0.1:5000/team/app:1" },
  { { repository = "acme/app" }, "docker.io/acme/app" },
}, function(row)
  t.eq(image.format(row[1]), row[2])
end)

t.cases("format refuses bad parts", {
  { { tag = "1" }, "option 'repository' is required" },
  { { repository = "app:1", tag = "2" }, "invalid image reference 'app:1:2'" },
  { { repository = "app:1" }, "is not a repository with tag" },
  { { repository = "app", tag = "bad tag" }, "whitespace" },
  { { repository = "app", colour = "red" }, "unknown option 'colour'" },
}, function(row)
  local ok, err = pcall(image.format, row[1])
  t.eq(ok, false)
  local matched = false
  for alt in row[2]:gmatch("[^|]+") do if tostring(err):find(alt) then matched = true end end
  t.ok(matched, tostring(err))
end)

t.case("repository() is the name without tag or digest", function()
  t.eq(image.repository("127.0.0.1:5000/app:1@" .. D), "127.0.0.1:5000/app")
end)
