// lodectl: the operator's command line. Subcommands are added per module.
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0) {
    std::puts("usage: lodectl <command> [args]");
    return argc < 2 ? 2 : 0;
  }
  std::fprintf(stderr, "lodectl: unknown command '%s'\n", argv[1]);
  return 2;
}
