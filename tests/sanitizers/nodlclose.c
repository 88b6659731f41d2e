/*
 * nodlclose.so - preloaded into the Lua run under ASan (make test, lua-asan).
 *
 * lua_close() unloads C modules with dlclose() before the process exits, and
 * LeakSanitizer checks for leaks only after that, at exit: the frames of an unloaded
 * module print as "<unknown module>", so a leak in tlsrekey.core would be reported
 * without saying where. Keeping every module loaded keeps the stacks readable.
 * It changes nothing else: Lua ignores dlclose's result.
 */
int dlclose(void *handle)
{
    (void)handle;
    return 0;
}
