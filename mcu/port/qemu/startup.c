/* startup.c: vector table and reset handler for the QEMU firmware (copy .data, zero .bss, main). */
#include <stdint.h>
#include <string.h>

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
int main(void);
void sh_exit(int code) __attribute__((noreturn));

void reset_handler(void)
{
    memcpy(&__data_start, &__data_load, (size_t)((char *)&__data_end - (char *)&__data_start));
    memset(&__bss_start, 0, (size_t)((char *)&__bss_end - (char *)&__bss_start));
    sh_exit(main());
}

static void fault_handler(void) { sh_exit(99); }

__attribute__((section(".vectors"), used)) static const void *const vectors[16] = {
    &__stack_top, (void *)reset_handler, (void *)fault_handler, (void *)fault_handler,
    (void *)fault_handler, (void *)fault_handler, (void *)fault_handler, 0, 0, 0, 0,
    (void *)fault_handler, (void *)fault_handler, 0, (void *)fault_handler, (void *)fault_handler,
};
