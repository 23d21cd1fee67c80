# fuzz.mk - hardening targets, included by the Makefile.
#
#   make fuzz FUZZ_SECONDS=N     build every libFuzzer harness (clang,
#                                ASan + UBSan) and run each for N seconds
#                                (default 60) on its seed corpus, printing
#                                exec counts; non-zero exit on a finding
#   make fuzz-build              only build them (build/fuzz/fuzz_<name>)
#   make fuzz-<name>             build and run one (codec, fs_entry, uwsgi,
#                                redis_reply, redis_topology)
#   make leakcheck               valgrind of lua5.4 running the core specs
#
# Harnesses whose code under test does not exist yet are left out. Inputs
# that libFuzzer finds go to build/fuzz/corpus/<name> (fuzz/corpus/<name> is
# the committed seed corpus, read only); crashes go to
# build/fuzz/artifacts/<name>-crash-*, and are replayed with
# `build/fuzz/fuzz_<name> FILE`.

FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_DIR     ?= build/fuzz
FUZZ_CFLAGS  := -std=c11 -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -Iengine -Ibindings -Ibackends $(DEP_CFLAGS)
FUZZ_LIBS    := $(DEP_LIBS)

# Every harness links the whole engine (engine/ and backends/): the code
# under test calls whatever engine helpers it likes, and a list per harness
# goes stale with every new helper. redis_topology compiles Cluster and
# Sentinel through its hooks (which include their .c files), so those two
# are left out of its copy.
FUZZ_ENGINE_TOPO     := $(filter-out backends/redis/redis_cluster.c backends/redis/redis_sentinel.c,$(ENGINE_SRC))

# name: sources (the harness first); a harness is built when all exist.
FUZZ_SRC_codec       := fuzz/fuzz_codec.c bindings/value.c $(ENGINE_SRC)
FUZZ_SRC_uwsgi       := fuzz/fuzz_uwsgi.c $(ENGINE_SRC)
FUZZ_SRC_redis_reply := fuzz/fuzz_redis_reply.c $(ENGINE_SRC)
FUZZ_SRC_redis_topology := fuzz/fuzz_redis_topology.c fuzz/hooks/redis_cluster_hook.c \
                        fuzz/hooks/redis_sentinel_hook.c $(FUZZ_ENGINE_TOPO)
# Needed but not compiled on their own (the hooks include them).
FUZZ_NEED_redis_topology := backends/redis/redis_cluster.c backends/redis/redis_sentinel.c
FUZZ_SRC_fs_entry    := fuzz/fuzz_fs_entry.c $(ENGINE_SRC)
# Headers each depends on (not every header of the tree: other backends'
# headers change often and would rebuild everything).
FUZZ_HDR             := $(wildcard engine/*.h)
FUZZ_HDR_codec       := $(wildcard bindings/*.h)
FUZZ_HDR_fs_entry    := $(wildcard backends/filesystem/*.h)
FUZZ_HDR_uwsgi       := backends/uwsgi/uwsgi_proto.h
FUZZ_HDR_redis_reply := backends/redis/redis_proto.h
FUZZ_HDR_redis_topology := $(wildcard backends/redis/*.h)
FUZZ_XFLAGS_codec    := $(shell $(PKG) --cflags lua5.4 2>/dev/null)
FUZZ_XLIBS_codec     := $(shell $(PKG) --libs lua5.4 2>/dev/null)

FUZZ_ALL   := codec fs_entry uwsgi redis_reply redis_topology
FUZZ_NAMES := $(foreach n,$(FUZZ_ALL),$(if $(strip $(foreach f,$(FUZZ_SRC_$(n)) $(FUZZ_NEED_$(n)),$(if $(wildcard $(f)),,missing))),,$(n)))
FUZZ_BINS  := $(FUZZ_NAMES:%=$(FUZZ_DIR)/fuzz_%)

.PHONY: fuzz fuzz-build leakcheck $(FUZZ_ALL:%=fuzz-%)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@FUZZ_DIR=$(FUZZ_DIR) fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_NAMES)

$(FUZZ_ALL:%=fuzz-%): fuzz-%: $(FUZZ_DIR)/fuzz_%
	@FUZZ_DIR=$(FUZZ_DIR) fuzz/run.sh $(FUZZ_SECONDS) $*

define FUZZ_RULE
$(FUZZ_DIR)/fuzz_$(1): $(FUZZ_SRC_$(1)) $(FUZZ_NEED_$(1)) $(FUZZ_HDR) $(FUZZ_HDR_$(1)) fuzz/fuzz.mk
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_XFLAGS_$(1)) $(FUZZ_SRC_$(1)) \
	    $(FUZZ_LIBS) $(FUZZ_XLIBS_$(1)) -o $$@
endef
$(foreach n,$(FUZZ_NAMES),$(eval $(call FUZZ_RULE,$(n))))

leakcheck: all
	@OBJDIR=$(OBJDIR) MODDIR=$(MODDIR) fuzz/leakcheck.sh
