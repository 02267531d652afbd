// Only in AddressSanitizer builds (cmake/cuda_emu.cmake): the emulator's
// fibers then use Boost.Context's ucontext implementation, whose header tells
// the sanitizer about each stack switch (BOOST_USE_ASAN). That header leaves
// one function to the library, which Debian builds for fcontext instead: the
// thread's running context, defined here.
#if !defined(BOOST_USE_UCONTEXT) || !defined(BOOST_USE_ASAN)
#error "src/cuda_emu/asan_fibers.cc is for BOOST_USE_UCONTEXT + BOOST_USE_ASAN"
#endif

#include <boost/context/fiber.hpp>
#include <memory>

namespace boost::context::detail {

fiber_activation_record*& fiber_activation_record::current() noexcept {
  // Each host thread starts in its own (main) context; the record of the
  // context running now is what a switch saves into and restores from.
  thread_local std::unique_ptr<fiber_activation_record> thread_context(
      new fiber_activation_record());
  thread_local fiber_activation_record* running = thread_context.get();
  return running;
}

}  // namespace boost::context::detail
