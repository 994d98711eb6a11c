// outbound.cpp — see outbound.hpp.
#include "mta/outbound.hpp"
