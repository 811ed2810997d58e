# HOIST_SANITIZE: every target (libhoist, hoist, hoist_tests, the fuzzers) with AddressSanitizer,
# LeakSanitizer (part of ASan on Linux) and UndefinedBehaviorSanitizer. UBSan does not recover,
# so a finding fails the test that hit it instead of scrolling past.
# HOIST_FUZZ: coverage instrumentation for libFuzzer (clang only); fuzz/ links the fuzzers.
#
# LuaJIT is Debian's uninstrumented library with its own allocator, so ASan sees neither its
# heap nor its stack frames; nothing else is needed for it (Debian's build has no
# LUAJIT_USE_SYSMALLOC, and hoist never passes Lua-owned memory to free()).
if(HOIST_SANITIZE)
  set(HOIST_SANITIZE_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer)
  # -O1 and line tables are what the reports need, at a fraction of -O2 -g's build time; they
  # come after the build type's flags, so they win. Assertions on: a tree for finding bugs.
  add_compile_options(${HOIST_SANITIZE_FLAGS} -O1 -g1 -UNDEBUG -D_GLIBCXX_ASSERTIONS)
  # clang 14's -fsanitize=function (part of undefined) cannot compile C++20 coroutines ("Cannot
  # represent a difference across sections", the registry client); it checks calls through
  # mistyped function pointers, which C++ code without casts does not make.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    add_compile_options(-fno-sanitize=function)
  endif()
  add_link_options(${HOIST_SANITIZE_FLAGS})
endif()

if(HOIST_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "HOIST_FUZZ needs clang (libFuzzer): configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  if(NOT HOIST_SANITIZE)
    # the coverage hooks in every object come from the sanitizer runtime
    message(FATAL_ERROR "HOIST_FUZZ needs HOIST_SANITIZE=ON")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
  add_link_options(-fsanitize=fuzzer-no-link)
endif()
