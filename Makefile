# cache - a cache engine in C for Lua.  See README.md.
#
#   make               build cache/core.so for Lua 5.4
#   make LUA=luajit    the same source against LuaJIT 2.1 (OpenResty)
#   make demo          install what is missing, build, run examples/demo.lua
#   make test          install what is missing, build, run every spec with
#                      its servers; ends with "N passed, N failed, N skipped"
#   make bench         benchmarks beside their baselines
#   make rock          the release source rock cache-$(VERSION)-1.src.rock (luarocks pack)
#   make clean

LUA       ?= lua5.4
SANITIZE  ?= 0
CC        ?= cc
PKG       ?= pkg-config

ifeq ($(LUA),luajit)
  LUA_PC   := luajit
  LUA_BIN  := luajit
else
  LUA_PC   := $(LUA)
  LUA_BIN  := $(LUA)
endif

DEPS_PC   := hiredis libmemcached libssl libcrypto
WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
OPT       ?= -O2
CFLAGS    ?= $(OPT) -g
ALL_CFLAGS = -std=c11 -fPIC $(WARN) $(CFLAGS)
ifeq ($(SANITIZE),1)
  ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  SAN_LDFLAGS := -fsanitize=address,undefined
endif
DEP_CFLAGS := $(shell $(PKG) --cflags $(DEPS_PC) 2>/dev/null)
DEP_LIBS   := $(shell $(PKG) --libs $(DEPS_PC) 2>/dev/null) -lpthread -lm
# LuaRocks passes LUA_INCDIR for the Lua it builds for; otherwise pkg-config.
ifdef LUA_INCDIR
  LUA_CFLAGS := -I$(LUA_INCDIR)
else
  LUA_CFLAGS := $(shell $(PKG) --cflags $(LUA_PC) 2>/dev/null)
endif

ENGINE_SRC  := $(wildcard engine/*.c backends/*.c backends/*/*.c)
BINDING_SRC := $(wildcard bindings/*.c)
OBJDIR      ?= build/$(if $(filter 1,$(SANITIZE)),san,obj)
MODDIR      ?= .
ENGINE_OBJ  := $(ENGINE_SRC:%.c=$(OBJDIR)/%.o)
# Binding objects depend on the Lua headers: keep one directory per Lua
# (LuaRocks names the headers by LUA_INCDIR, which then tells them apart).
LUA_TAG     := $(if $(LUA_INCDIR),$(subst /,_,$(LUA_INCDIR)),$(LUA))
BINDING_OBJ := $(BINDING_SRC:%.c=$(OBJDIR)/$(LUA_TAG)/%.o)
ENGINE_LIB  := $(OBJDIR)/libcacheengine.a
HEADERS     := $(wildcard engine/*.h backends/*.h backends/*/*.h bindings/*.h)

.PHONY: all deps demo test soak bench clean install engine-lib version rockspec rock $(MODDIR)/cache/core.so
all: $(MODDIR)/cache/core.so

# The module is always refreshed from the build of the selected Lua, so
# switching LUA= relinks what `require "cache.core"` loads.
$(MODDIR)/cache/core.so: $(OBJDIR)/$(LUA_TAG)/core.so
	@mkdir -p $(MODDIR)/cache
	cp $< $@.tmp && mv -f $@.tmp $@  # a new inode: a running Lua keeps its copy

$(OBJDIR)/$(LUA_TAG)/core.so: $(BINDING_OBJ) $(ENGINE_LIB)
	$(CC) -shared -o $@ $(BINDING_OBJ) $(ENGINE_LIB) $(DEP_LIBS) $(SAN_LDFLAGS)

# A plain archive: the registry refers to every backend's constructor, so
# linking anything that opens backends pulls every backend in.
$(ENGINE_LIB): $(ENGINE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(OBJDIR)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(DEP_CFLAGS) -Iengine -c $< -o $@

$(OBJDIR)/$(LUA_TAG)/bindings/%.o: bindings/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) $(DEP_CFLAGS) -Iengine -c $< -o $@

engine-lib: $(ENGINE_LIB)

deps:
	@tools/install-deps.sh all

demo:
	@tools/install-deps.sh build
	@$(MAKE) --no-print-directory all >/dev/null
	@LUA_PATH="lua/?.lua;;" LUA_CPATH="./?.so;;" $(LUA_BIN) examples/demo.lua

test:
	@tools/install-deps.sh all
	@$(MAKE) --no-print-directory all engine-lib
	@SANITIZE=$(SANITIZE) OBJDIR=$(OBJDIR) spec/run.sh

# make soak SECONDS=N: the model-based test (spec/model_spec.lua) for N
# seconds (default 600) per family of backends, the families side by side;
# prints per backend the calls made and the divergences. CACHE_MODEL_SEED=n
# replays a run.
soak:
	@tools/install-deps.sh all
	@$(MAKE) --no-print-directory all engine-lib
	@CACHE_MODEL_SECONDS=$(or $(SECONDS),600) SANITIZE=$(SANITIZE) OBJDIR=$(OBJDIR) spec/run.sh spec/model_spec.lua

bench:
	@tools/install-deps.sh all
	@$(MAKE) --no-print-directory all >/dev/null
	@bench/run.sh

# `luarocks make` runs `make` and then this, with INST_LIBDIR / INST_LUADIR
# pointing into the rocks tree. It installs the module the build step made
# and never builds: called without the build's LUA / LUA_INCDIR (as luarocks
# does), a rebuild would compile for another Lua than the one installed for.
INST_LIBDIR ?= /usr/local/lib/lua/5.4
INST_LUADIR ?= /usr/local/share/lua/5.4
install:
	@test -f $(MODDIR)/cache/core.so || { echo "make install: no $(MODDIR)/cache/core.so: run make first (same LUA / LUA_INCDIR / MODDIR)" >&2; exit 1; }
	install -d $(DESTDIR)$(INST_LIBDIR)/cache $(DESTDIR)$(INST_LUADIR)/cache
	install -m 0755 $(MODDIR)/cache/core.so $(DESTDIR)$(INST_LIBDIR)/cache/core.so
	install -m 0644 lua/cache.lua $(DESTDIR)$(INST_LUADIR)/cache.lua
	for f in lua/cache/*.lua; do [ -e "$$f" ] && install -m 0644 "$$f" $(DESTDIR)$(INST_LUADIR)/cache/ || true; done

# The release. Its version has one place, cache._VERSION in lua/cache.lua;
# rockspec/release.sh derives the release rockspec from the scm one (the only
# place its build rules are written). `make rockspec` writes it; `make rock`
# refuses a stale one, then packs the files git tracks into
# $(ROCKDIR)/cache-$(VERSION).tar.gz and, with `luarocks pack`, into the source
# rock $(ROCKDIR)/cache-$(VERSION)-1.src.rock, which carries them: installing
# it needs no network.
VERSION          := $(shell sed -n 's/^ *_VERSION = "cache \([^"]*\)".*/\1/p' lua/cache.lua)
RELEASE_ROCKSPEC := rockspec/cache-$(VERSION)-1.rockspec
ROCKDIR          ?= .

version:
	@echo $(VERSION)

rockspec:
	sh rockspec/release.sh $(VERSION) >$(RELEASE_ROCKSPEC).tmp && mv -f $(RELEASE_ROCKSPEC).tmp $(RELEASE_ROCKSPEC)

rock:
	@sh rockspec/release.sh $(VERSION) | cmp -s - $(RELEASE_ROCKSPEC) || { \
	  echo "make rock: $(RELEASE_ROCKSPEC) is missing or not the scm rockspec at $(VERSION): run make rockspec" >&2; exit 1; }
	@git rev-parse --is-inside-work-tree >/dev/null 2>&1 || { \
	  echo "make rock: the rock holds the files git tracks: run it in a git checkout" >&2; exit 1; }
	@mkdir -p $(ROCKDIR)
	git ls-files -z | tar --null -T - --transform 's,^,cache-$(VERSION)/,' -czf $(ROCKDIR)/cache-$(VERSION).tar.gz
	@# luarocks pack fetches source.url: hand it the tarball by absolute path
	@tmp=$$(mktemp -d) && \
	  sed 's|^  url = "cache-$(VERSION).tar.gz",|  url = "file://$(abspath $(ROCKDIR))/cache-$(VERSION).tar.gz",|' \
	    $(RELEASE_ROCKSPEC) >$$tmp/cache-$(VERSION)-1.rockspec && \
	  (cd $(ROCKDIR) && luarocks pack $$tmp/cache-$(VERSION)-1.rockspec); rc=$$?; rm -rf $$tmp; exit $$rc

clean:
	rm -rf build cache cache-*.tar.gz cache-*.src.rock

# Hardening: make fuzz, make leakcheck (fuzz/fuzz.mk)
include fuzz/fuzz.mk
