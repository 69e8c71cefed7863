#include <stdio.h>
int main(void) { puts("ember: not built yet"); return 1; }
