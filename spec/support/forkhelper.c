/* forkhelper: process control for the model-based test (spec/model_spec.lua,
 * tools/soak.lua). A test utility, not part of the product: spec/support/
 * model.lua compiles it into the suite's temporary folder against the headers
 * of the Lua that runs the spec, and loads it from there.
 *
 *   fork()                    -> pid (0 in the child) | nil, err
 *   exit(code)                   _exit(2): no atexit handlers, no Lua state
 *                                closed, no stdio flushed (a forked child must
 *                                not run the parent's finalizers or flush its
 *                                buffers a second time)
 *   wait(pid [, nohang])      -> "exited", code | "signaled", signo
 *                                | nil (still running, with nohang) | nil, err
 *   signal(pid, name)         -> true | nil, err   (name: STOP CONT TERM KILL)
 *   spawn(argv, logpath)      -> pid | nil, err   execvp(argv) in a child whose
 *                                stdin is /dev/null, stdout and stderr the log,
 *                                and which inherits no other descriptor
 *   resume_after(pids, secs)  -> pid of a child that sends SIGCONT to every
 *                                pid after secs seconds and exits: a paused
 *                                server is resumed even if the caller dies
 *   getpid()                  -> pid
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

static int fail(lua_State *L, const char *what)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(errno));
    return 2;
}

static int l_fork(lua_State *L)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return fail(L, "fork");
    lua_pushinteger(L, (lua_Integer)pid);
    return 1;
}

static int l_exit(lua_State *L)
{
    _exit((int)luaL_optinteger(L, 1, 0));
    return 0;
}

static int l_wait(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    int flags = lua_toboolean(L, 2) ? WNOHANG : 0;
    int status = 0;
    pid_t r;
    do
        r = waitpid(pid, &status, flags);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return fail(L, "waitpid");
    if (r == 0)
        return 0;
    if (WIFEXITED(status)) {
        lua_pushliteral(L, "exited");
        lua_pushinteger(L, WEXITSTATUS(status));
    } else {
        lua_pushliteral(L, "signaled");
        lua_pushinteger(L, WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    }
    return 2;
}

static int signo_of(lua_State *L, int arg)
{
    const char *name = luaL_checkstring(L, arg);
    if (strcmp(name, "STOP") == 0)
        return SIGSTOP;
    if (strcmp(name, "CONT") == 0)
        return SIGCONT;
    if (strcmp(name, "TERM") == 0)
        return SIGTERM;
    if (strcmp(name, "KILL") == 0)
        return SIGKILL;
    return luaL_argerror(L, arg, "STOP, CONT, TERM or KILL expected");
}

static int l_signal(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    int sig = signo_of(L, 2);
    if (pid <= 0)
        return luaL_argerror(L, 1, "a positive pid expected");
    if (kill(pid, sig) < 0)
        return fail(L, "kill");
    lua_pushboolean(L, 1);
    return 1;
}

/* In a fresh child: every descriptor above stderr closed, so a spawned
 * server holds none of the test's connections open. */
static void close_inherited(void)
{
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (int fd = 3; fd < max; fd++)
        close(fd);
}

#define SPAWN_MAX_ARGS 64

static int l_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *log = luaL_checkstring(L, 2);
    const char *argv[SPAWN_MAX_ARGS + 1];
    int n = 0;
    for (;; n++) {
        lua_rawgeti(L, 1, n + 1);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        if (n == SPAWN_MAX_ARGS)
            return luaL_argerror(L, 1, "too many arguments");
        argv[n] = luaL_checkstring(L, -1);
        lua_pop(L, 1); /* the string stays alive in the table */
    }
    if (n == 0)
        return luaL_argerror(L, 1, "an empty argv");
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return fail(L, "fork");
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (in < 0 || out < 0)
            _exit(126);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        close_inherited();
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    lua_pushinteger(L, (lua_Integer)pid);
    return 1;
}

#define RESUME_MAX_PIDS 64

static int l_resume_after(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    double secs = luaL_checknumber(L, 2);
    pid_t pids[RESUME_MAX_PIDS];
    int n = 0;
    for (;; n++) {
        lua_rawgeti(L, 1, n + 1);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        if (n == RESUME_MAX_PIDS)
            return luaL_argerror(L, 1, "too many pids");
        pids[n] = (pid_t)luaL_checkinteger(L, -1);
        lua_pop(L, 1);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return fail(L, "fork");
    if (pid == 0) {
        close_inherited();
        struct timespec ts;
        ts.tv_sec = (time_t)secs;
        ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        for (int i = 0; i < n; i++)
            if (pids[i] > 0)
                kill(pids[i], SIGCONT);
        _exit(0);
    }
    lua_pushinteger(L, (lua_Integer)pid);
    return 1;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static const luaL_Reg funcs[] = {
    {"fork", l_fork},     {"exit", l_exit},
    {"wait", l_wait},     {"signal", l_signal},
    {"spawn", l_spawn},   {"resume_after", l_resume_after},
    {"getpid", l_getpid}, {NULL, NULL},
};

int luaopen_forkhelper(lua_State *L)
{
#if LUA_VERSION_NUM >= 502
    luaL_newlib(L, funcs);
#else
    lua_newtable(L);
    luaL_register(L, NULL, funcs);
#endif
    return 1;
}
