# The shipped provider shaping file (conf/shaping-providers.toml), written as
# a C++ raw string to generated/conf/shaping_providers.inc for
# conf/config_shaping.cpp (shaping.providers = "builtin"). Included by
# conf/CMakeLists.txt and, for fuzz_config, by test/fuzz/CMakeLists.txt.
set(SLUICE_GENERATED_DIR ${PROJECT_BINARY_DIR}/generated)
file(READ ${PROJECT_SOURCE_DIR}/conf/shaping-providers.toml SLUICE_PROVIDERS_TEXT)
file(WRITE ${SLUICE_GENERATED_DIR}/conf/shaping_providers.inc.new
  "R\"SLUICE_PROVIDERS(${SLUICE_PROVIDERS_TEXT})SLUICE_PROVIDERS\"\n")
file(COPY_FILE ${SLUICE_GENERATED_DIR}/conf/shaping_providers.inc.new
  ${SLUICE_GENERATED_DIR}/conf/shaping_providers.inc ONLY_IF_DIFFERENT)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/conf/shaping-providers.toml)
